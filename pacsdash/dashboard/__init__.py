"""The Panel dashboard: find a study, look at it, act on it.

Components take a data source (:mod:`pacsdash.dashboard.sources`): the local
archive, or a :class:`pacsdash.client.Client` of any DICOMweb server, so the
same component serves the app and a notebook cell (see :mod:`pacsdash.widgets`).
"""
