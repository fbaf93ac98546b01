"""Small, fully controlled DICOM instances for tests."""

from __future__ import annotations

import io

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PREFIX = "1.2.826.0.1.3680043.10.1474.9."


def make_dataset(**attributes) -> Dataset:
    """A tiny CT instance; keyword arguments override or add attributes."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid(PREFIX)
    ds.StudyInstanceUID = generate_uid(PREFIX)
    ds.SeriesInstanceUID = generate_uid(PREFIX)
    ds.PatientID = "P1"
    ds.PatientName = "DOE^JANE"
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = b"\x00\x01" * 4
    for keyword, value in attributes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", CTImageStorage)
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", generate_uid(PREFIX))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def make_instance(**attributes) -> bytes:
    """The Part 10 bytes of :func:`make_dataset`."""
    buffer = io.BytesIO()
    make_dataset(**attributes).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
