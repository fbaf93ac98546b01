"""A Python client of any DICOMweb server, for notebooks.

>>> from pacsdash.client import connect
>>> client = connect("http://127.0.0.1:8042/dicom-web", user="viewer", password="...")
>>> client.studies(PatientName="doe*")           # a pandas DataFrame
>>> client.cohort("series", Modality="CT", SliceThickness="<=1")
>>> client.volume(study_uid, series_uid).array   # numpy (z, y, x)
"""

from pacsdash.client.client import Client, ClientError, connect
from pacsdash.client.volume import NotAVolume, Volume

__all__ = ["Client", "ClientError", "NotAVolume", "Volume", "connect"]
