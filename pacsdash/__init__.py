"""pacsdash: a small PACS with a DICOM node, DICOMweb and a dashboard."""

__version__ = "0.1.0"
