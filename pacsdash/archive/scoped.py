"""The archive as one user or peer may see it.

Doors read through ``archive.scoped(scope)``: every query it runs carries
that scope (:class:`~pacsdash.archive.query.Scope`, applied by the SQL
compiler), every location it gives is of a visible study, and a hidden study
is simply not there, as an unknown UID is (a door answers 404, never a 403
that would confirm it exists). Whatever else the archive offers (storing,
opening located files, records) passes through unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pacsdash.archive.attributes import Level
from pacsdash.archive.index import InstanceLocation
from pacsdash.archive.query import Query, Scope


def scope_of(archive: Any) -> Scope | None:
    """The scope an archive view reads with (None: the whole archive)."""
    return archive.scope if isinstance(archive, ScopedArchive) else None


class ScopedArchive:
    """An :class:`~pacsdash.archive.archive.Archive` seen through ``scope``."""

    def __init__(self, archive: Any, scope: Scope) -> None:
        self.unscoped = archive
        self.scope = scope

    def _query(self, query: Query) -> Query:
        return replace(query, scope=self.scope)

    def find(self, query: Query) -> list[dict[str, Any]]:
        """Visible entities matching ``query``."""
        return self.unscoped.find(self._query(query))

    def count(self, query: Query) -> int:
        """How many visible entities match ``query``."""
        return self.unscoped.count(self._query(query))

    def locate(self, level: Level, uid: str | None = None, scope: Scope | None = None,
               **keys: str) -> list[InstanceLocation]:
        """Instances of a visible entity."""
        return self.unscoped.locate(level, uid, self.scope, **keys)

    def locate_instance(self, sop_uid: str, scope: Scope | None = None) -> InstanceLocation | None:
        """One visible instance, or None."""
        return self.unscoped.locate_instance(sop_uid, self.scope)

    def locate_matching(self, query: Query) -> list[InstanceLocation]:
        """Visible instances matching an IMAGE-level query."""
        return self.unscoped.locate_matching(self._query(query))

    def summary(self, scope: Scope | None = None) -> dict[str, Any]:
        """Totals and breakdowns of the visible studies."""
        return self.unscoped.summary(self.scope)

    def store_bytes(self, raw: bytes, *args: Any, **kwargs: Any) -> Any:
        """Store an instance; a study it makes gets the scope's labels, so
        that whoever stores through this view keeps seeing what they stored."""
        kwargs.setdefault("labels", tuple(sorted(self.scope.labels)))
        return self.unscoped.store_bytes(raw, *args, **kwargs)

    def sees(self, study_uid: str) -> bool:
        """Whether the study is indexed and visible."""
        return self.scope.sees(self.unscoped.labels_of(study_uid)) and bool(
            self.unscoped.count(Query(Level.STUDY, {"StudyInstanceUID": study_uid})))

    def scoped(self, scope: Scope | None) -> Any:
        """This view (a scope is chosen once, by the door)."""
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unscoped, name)
