"""What the traffic recorder keeps: one small, picklable record per thing seen.

Events are named tuples (cheap to make, to pickle in batches from a DICOM
worker process, and to keep by the thousand). Their names follow the
standard: an association's A-ASSOCIATE request and answer (PS3.8 7.1), its
release (A-RELEASE, PS3.8 7.2) or abort (A-ABORT / A-P-ABORT, PS3.8 7.3-7.4),
and the DIMSE messages it carries in P-DATA-TF PDUs (PS3.7 9.3, PS3.8 9.3.5).
"""

from __future__ import annotations

from typing import NamedTuple

#: (presentation context ID, abstract syntax UID, transfer syntax UIDs).
Proposed = tuple[int, str, tuple[str, ...]]
#: (presentation context ID, abstract syntax UID, accepted transfer syntax
#: UID or "", result: "accepted" or the reason of the rejection, PS3.8 9.3.3.2).
Accepted = tuple[int, str, str, str]


class AssociationOpened(NamedTuple):
    """An association accepted (A-ASSOCIATE-RQ answered by A-ASSOCIATE-AC, PS3.8 7.1.1)."""

    time: float
    key: str
    calling_aet: str
    called_aet: str
    address: str
    port: int
    proposed: tuple[Proposed, ...]
    accepted: tuple[Accepted, ...]
    #: Maximum PDU lengths each side announced (0: no limit; PS3.8 D.1).
    requestor_max_pdu: int = 0
    acceptor_max_pdu: int = 0
    implementation_class_uid: str = ""
    implementation_version: str = ""


class AssociationRejected(NamedTuple):
    """An association refused (A-ASSOCIATE-RJ, PS3.8 7.1.1.9)."""

    time: float
    key: str
    calling_aet: str
    called_aet: str
    address: str
    port: int
    proposed: tuple[Proposed, ...]
    reason: str


class DimseMessage(NamedTuple):
    """One DIMSE message received or sent (PS3.7 9.3), with its status if a response."""

    time: float
    key: str
    #: "received" or "sent", seen from pacsdash.
    direction: str
    #: The message's name: ``C-STORE-RQ``, ``C-FIND-RSP``, ...
    command: str
    message_id: int
    context_id: int
    sop_class: str
    #: Status (0000,0900) of a response, None for a request.
    status: int | None = None
    #: P-DATA-TF PDUs and data set bytes that carried it (0 when not counted).
    pdus: int = 0
    size: int = 0
    #: A few values of the message: (keyword, value) pairs, such as the
    #: Affected SOP Instance UID or a C-FIND identifier's keys.
    values: tuple[tuple[str, str], ...] = ()


class AssociationClosed(NamedTuple):
    """The end of an association: ``released`` (PS3.8 7.2), ``aborted``
    (PS3.8 7.3, 7.4) or ``closed`` (the connection ended)."""

    time: float
    key: str
    how: str


class InstancesArchived(NamedTuple):
    """Instances of one study committed to the index, received from ``origin``."""

    time: float
    origin: str
    StudyInstanceUID: str
    PatientName: str
    PatientID: str
    count: int


class HttpRequest(NamedTuple):
    """One HTTP request answered: its route as a template, never its raw path."""

    time: float
    method: str
    route: str
    status: int
    #: Seconds from the request's arrival to its answer.
    duration: float


Event = AssociationOpened | AssociationRejected | DimseMessage | AssociationClosed | InstancesArchived | HttpRequest
