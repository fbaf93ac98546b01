"""DIMSE doors: the DICOM node (SCP) and helpers to call peers (SCU)."""
