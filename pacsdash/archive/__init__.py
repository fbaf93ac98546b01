"""The archive: original files in a store, their metadata in an index.

Knows nothing of HTTP, DIMSE or Panel; every door calls :class:`Archive`.
"""

from pacsdash.archive.archive import (Archive, DamagedFile, MissingFile, Outcome, StoredFileError, StoreResult,
                                      store_many)
from pacsdash.archive.attributes import Level
from pacsdash.archive.index import InstanceLocation
from pacsdash.archive.parsing import InvalidInstance
from pacsdash.archive.query import InvalidQuery, Query, Scope

__all__ = [
    "Archive",
    "DamagedFile",
    "InstanceLocation",
    "InvalidInstance",
    "InvalidQuery",
    "Level",
    "MissingFile",
    "Outcome",
    "Query",
    "Scope",
    "StoreResult",
    "StoredFileError",
    "store_many",
]
