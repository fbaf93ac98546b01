"""Named DIMSE status codes used by pacsdash, with their PS3.4/PS3.7 source."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Status values sent in DIMSE responses."""

    #: PS3.7 C.1.1: the operation succeeded.
    SUCCESS = 0x0000
    #: PS3.4 C.4.1.1.4 / C.4.2.1.5: a match or sub-operation follows.
    PENDING = 0xFF00
    #: PS3.4 C.4.1.1.4: matching or sub-operations stopped by C-CANCEL.
    CANCEL = 0xFE00
    #: PS3.7 Annex C general status "Refused: Not Authorized" (0124H), for a
    #: peer not allowed the operation.
    NOT_AUTHORIZED = 0x0124
    #: PS3.4 B.2.3: "Refused: Out of Resources".
    STORE_OUT_OF_RESOURCES = 0xA700
    #: PS3.4 B.2.3: "Error: Data Set does not match SOP Class".
    STORE_DATASET_MISMATCH = 0xA900
    #: PS3.4 B.2.3: "Error: Cannot understand" (C000-CFFF).
    STORE_CANNOT_UNDERSTAND = 0xC000
    #: PS3.4 C.4.1.1.4: "Identifier does not match SOP Class".
    FIND_IDENTIFIER_MISMATCH = 0xA900
    #: PS3.4 C.4.1.1.4: "Unable to process" (C000-CFFF).
    UNABLE_TO_PROCESS = 0xC000
    #: PS3.4 C.4.2.1.5: "Refused: Move Destination unknown".
    MOVE_DESTINATION_UNKNOWN = 0xA801
    #: PS3.4 C.4.2.1.5: "Refused: Out of Resources - Unable to calculate
    #: number of matches".
    RETRIEVE_OUT_OF_RESOURCES = 0xA701
    #: PS3.4 C.4.2.1.5: "Refused: Out of Resources - Unable to perform
    #: sub-operations".
    SUBOPERATIONS_OUT_OF_RESOURCES = 0xA702
    #: PS3.4 C.4.2.1.5: "Warning: Sub-operations Complete - One or more
    #: Failures".
    SUBOPERATIONS_FAILED = 0xB000


# The C-STORE statuses of each storage outcome (stored, duplicate, refused ...)
# are in one table shared with STOW-RS and uploads: pacsdash/archive/outcomes.py.
