"""Benchmarks of pacsdash against Orthanc and a bare pynetdicom receiver.

Run ``.venv/bin/python -m benchmarks.run`` from the project folder (``--quick``
for a smoke run). Generated inputs are cached in ``benchmarks/work/``; results
go to ``benchmarks/results/latest.json`` and ``latest.md``.
"""
