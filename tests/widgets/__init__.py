"""Tests of pacsdash.widgets: the Explorer and the SeriesViewer on a DICOMweb server."""
