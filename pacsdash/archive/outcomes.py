"""What storing an instance can come to, and how each door says it.

One table: each :class:`StoreOutcome` with its DIMSE status (PS3.4 B.2.3),
the STOW-RS FailureReason (PS3.18 10.5.3, which takes the same PS3.4
codes) and the HTTP status of a request that stored nothing else. C-STORE,
STOW-RS and the dashboard's upload all classify through :func:`classify`
and read their codes here, so the three never disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pacsdash.archive.archive import Outcome, StudyMismatch
from pacsdash.archive.parsing import InvalidInstance


class StoreOutcome(enum.Enum):
    """What became of one instance offered to the archive."""

    STORED = "stored"
    #: Already archived: the first copy is kept, and the sender told success.
    DUPLICATE = "duplicate"
    #: The sender may not store here.
    NOT_AUTHORIZED = "not authorized"
    #: Not an instance the archive can file (not Part 10, no UIDs, unreadable).
    CANNOT_UNDERSTAND = "cannot understand"
    #: STOW-RS to ``/studies/{study}`` of an instance of another study.
    STUDY_MISMATCH = "study mismatch"
    #: A part that is not ``application/dicom``.
    UNSUPPORTED = "unsupported"
    #: The disk could not take it (full, unavailable): try again later.
    OUT_OF_RESOURCES = "out of resources"
    #: Anything else (logged where it happened).
    PROCESSING_FAILURE = "processing failure"


@dataclass(frozen=True)
class Codes:
    """How one outcome is said on each door."""

    dimse_status: int  # PS3.4 B.2.3
    failure_reason: int | None  # PS3.18 Table 10.5.3-2 (None: not a failure)
    http_status: int  # of a request whose every instance came to this
    text: str  # for people (dashboard, logs)


OUTCOMES: dict[StoreOutcome, Codes] = {
    StoreOutcome.STORED: Codes(0x0000, None, 200, "stored"),
    StoreOutcome.DUPLICATE: Codes(0x0000, None, 200, "already in the archive (the first copy is kept)"),
    StoreOutcome.NOT_AUTHORIZED: Codes(0x0124, 0x0124, 403, "not authorized to store here"),
    StoreOutcome.CANNOT_UNDERSTAND: Codes(0xC000, 0xC000, 409, "not a DICOM instance the archive can file"),
    StoreOutcome.STUDY_MISMATCH: Codes(0xA900, 0xA900, 409, "belongs to another study than the one it was sent to"),
    StoreOutcome.UNSUPPORTED: Codes(0x0122, 0x0122, 415, "not application/dicom"),
    StoreOutcome.OUT_OF_RESOURCES: Codes(0xA700, 0xA700, 503,
                                         "could not be written to the archive (disk full or unavailable)"),
    StoreOutcome.PROCESSING_FAILURE: Codes(0x0110, 0x0110, 500, "internal error while storing; see the server log"),
}


def classify(error: BaseException | None = None, outcome: Outcome | None = None) -> StoreOutcome:
    """The outcome of a store that raised ``error``, or that returned ``outcome``."""
    if error is None:
        return StoreOutcome.DUPLICATE if outcome is Outcome.DUPLICATE else StoreOutcome.STORED
    if isinstance(error, StudyMismatch):
        return StoreOutcome.STUDY_MISMATCH
    if isinstance(error, InvalidInstance):
        return StoreOutcome.CANNOT_UNDERSTAND
    if isinstance(error, OSError):
        return StoreOutcome.OUT_OF_RESOURCES
    return StoreOutcome.PROCESSING_FAILURE
