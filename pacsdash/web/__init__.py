"""HTTP doors: the JSON API (and, mounted beside it, DICOMweb and WADO-URI)."""
