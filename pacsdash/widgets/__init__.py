"""Panel widgets for notebooks and ``panel serve``, on any DICOMweb server.

>>> import panel as pn
>>> from pacsdash.client import connect
>>> from pacsdash.widgets import Explorer, SeriesViewer
>>> pn.extension("tabulator")
>>> Explorer(connect("http://127.0.0.1:8042/dicom-web", user="viewer", password="..."))
>>> SeriesViewer(archive=client, study_uid="1.2.3...")     # the viewer on its own

They are the dashboard's own components (search, series list, viewer),
reading through :mod:`pacsdash.dashboard.sources`.
"""

from pacsdash.dashboard.viewer import SeriesViewer
from pacsdash.widgets.explorer import Explorer

__all__ = ["Explorer", "SeriesViewer"]
