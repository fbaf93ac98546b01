"""The traffic record: what the DICOM and HTTP doors did, kept bounded in memory
for the ``/activity`` page (:mod:`pacsdash.dashboard.activity`)."""

from pacsdash.traffic.recorder import Snapshot, TrafficRecorder, TrafficSink

__all__ = ["Snapshot", "TrafficRecorder", "TrafficSink"]
