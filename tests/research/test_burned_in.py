"""Burned-in text (PS3.15 E.3.1): which instances are left out by default."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import (
    CTImageStorage, MRImageStorage, MultiFrameTrueColorSecondaryCaptureImageStorage, SecondaryCaptureImageStorage,
    UltrasoundImageStorage, UltrasoundMultiFrameImageStorage, VLPhotographicImageStorage,
)

from pacsdash.research.deidentify import burned_in_reason
from tests.factories import make_dataset

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "dicom-samples" / "valid"


@pytest.mark.parametrize("sop_class, modality", [(CTImageStorage, "CT"), (MRImageStorage, "MR"),
                                                 (SecondaryCaptureImageStorage, "OT"), (UltrasoundImageStorage, "US")])
def test_burned_in_annotation_yes_is_always_left_out(sop_class, modality):
    reason = burned_in_reason(make_dataset(SOPClassUID=sop_class, Modality=modality, BurnedInAnnotation="YES"))
    assert reason is not None and "YES" in reason


@pytest.mark.parametrize("sop_class, modality, kind", [
    (UltrasoundImageStorage, "US", "ultrasound"),
    (UltrasoundMultiFrameImageStorage, "US", "ultrasound"),
    (UltrasoundImageStorage, "OT", "ultrasound"),  # by its class, whatever the modality says
    ("1.2.840.10008.5.1.4.1.1.6", "OT", "ultrasound"),  # the retired classes
    ("1.2.840.10008.5.1.4.1.1.3", "OT", "ultrasound"),
    (SecondaryCaptureImageStorage, "OT", "secondary capture"),
    (SecondaryCaptureImageStorage, "CT", "secondary capture"),
    (MultiFrameTrueColorSecondaryCaptureImageStorage, "XC", "secondary capture"),
    (VLPhotographicImageStorage, "XC", "visible light"),
])
def test_ultrasound_and_secondary_capture_without_no_are_left_out(sop_class, modality, kind):
    reason = burned_in_reason(make_dataset(SOPClassUID=sop_class, Modality=modality))
    assert reason is not None and kind in reason
    assert "NO" in reason  # says what would let it in


@pytest.mark.parametrize("sop_class, modality", [
    (CTImageStorage, "CT"), (MRImageStorage, "MR"),
    (SecondaryCaptureImageStorage, "OT"), (UltrasoundImageStorage, "US"), (VLPhotographicImageStorage, "XC"),
])
def test_burned_in_annotation_no_lets_it_in(sop_class, modality):
    assert burned_in_reason(make_dataset(SOPClassUID=sop_class, Modality=modality, BurnedInAnnotation="NO")) is None


@pytest.mark.parametrize("sop_class, modality", [(CTImageStorage, "CT"), (MRImageStorage, "MR")])
def test_ct_and_mr_are_let_in(sop_class, modality):
    assert burned_in_reason(make_dataset(SOPClassUID=sop_class, Modality=modality)) is None


def test_a_class_that_only_begins_like_secondary_capture_is_not_one():
    # 1.2.840.10008.5.1.4.1.1.78.1 (Lensometry Measurements) begins with SC's "...1.1.7".
    assert burned_in_reason(make_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.78.1", Modality="LEN")) is None


def test_a_screen_capture_is_left_out_with_a_single_image_type_value():
    ds = make_dataset(ImageType="SCREEN")
    assert "screen capture" in burned_in_reason(ds)
    ds = make_dataset(ImageType=["DERIVED", "SECONDARY", "SCREEN SHOT"])
    assert "screen capture" in burned_in_reason(ds)


def test_without_pixels_nothing_is_burned_in():
    assert burned_in_reason(make_dataset(SOPClassUID=SecondaryCaptureImageStorage, Modality="OT",
                                         PixelData=None)) is None


def test_the_sample_corpus():
    seen = {}
    for path in sorted(SAMPLES.glob("*.dcm")):
        ds = dcmread(path)
        seen[path.name] = burned_in_reason(ds)
    assert seen["CT_small.dcm"] is None and seen["MR_small.dcm"] is None and seen["rtdose.dcm"] is None
    assert "ultrasound" in seen["examples_ybr_color.dcm"] and "ultrasound" in seen["ExplVR_BigEnd.dcm"]
    assert "secondary capture" in seen["SC_rgb_small_odd.dcm"]
    assert "secondary capture" in seen["GDCMJ2K_TextGBR.dcm"]  # no Modality: its class says it
    assert seen["test-SR.dcm"] is None and seen["waveform_ecg.dcm"] is None  # no pixels
