"""The Panel dashboard: find a study, look at it, act on it.

Components take an archive (or a DICOMweb client) as an argument, so the
same component serves the app and a notebook cell.
"""
