"""The archive as one user or peer may see it.

Doors read through ``archive.scoped(scope)``: every query it runs carries
that scope (:class:`~pacsdash.archive.query.Scope`, applied by the SQL
compiler), every location it gives is of a visible study, and a hidden study
is simply not there, as an unknown UID is (a door answers 404, never a 403
that would confirm it exists). Whatever else the archive offers (storing,
opening located files, records) passes through unchanged.

A view may also put what is read through it in the audit trail
(``audit=``): each search as a ``query``, each instance located as a
``retrieve`` (PS3.15 A.5.3.9, A.5.3.3), as the dashboard's session does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pacsdash.archive.attributes import Level
from pacsdash.archive.index import InstanceLocation
from pacsdash.archive.query import Query, Scope


#: ``audit(action, succeeded, studies, details)``: a read in the audit trail.
AuditHook = Callable[[str, bool, list[str], dict[str, Any]], None]


def scope_of(archive: Any) -> Scope | None:
    """The scope an archive view reads with (None: the whole archive)."""
    return archive.scope if isinstance(archive, ScopedArchive) else None


class ScopedArchive:
    """An :class:`~pacsdash.archive.archive.Archive` seen through ``scope``
    (None: every study), its reads audited through ``audit`` if given."""

    def __init__(self, archive: Any, scope: Scope | None, audit: AuditHook | None = None) -> None:
        self.unscoped = archive
        self.scope = scope
        self.audit = audit

    def _query(self, query: Query) -> Query:
        return query if self.scope is None else replace(query, scope=self.scope)

    def _retrieved(self, locations: list[InstanceLocation]) -> list[InstanceLocation]:
        if self.audit is not None and locations:
            self.audit("retrieve", True, sorted({loc.StudyInstanceUID for loc in locations}), {})
        return locations

    def find(self, query: Query) -> list[dict[str, Any]]:
        """Visible entities matching ``query``."""
        rows = self.unscoped.find(self._query(query))
        if self.audit is not None:
            keys = " ".join(f"{k}={v}" for k, v in query.filters.items() if v)
            studies = sorted({str(r["StudyInstanceUID"]) for r in rows if r.get("StudyInstanceUID")})
            self.audit("query", True, studies[:1000], {"query": f"{query.level.value} {keys}".strip()})
        return rows

    def count(self, query: Query) -> int:
        """How many visible entities match ``query``."""
        return self.unscoped.count(self._query(query))

    def locate(self, level: Level, uid: str | None = None, scope: Scope | None = None,
               **keys: str) -> list[InstanceLocation]:
        """Instances of a visible entity."""
        return self._retrieved(self.unscoped.locate(level, uid, self.scope, **keys))

    def locate_instance(self, sop_uid: str, scope: Scope | None = None) -> InstanceLocation | None:
        """One visible instance, or None."""
        location = self.unscoped.locate_instance(sop_uid, self.scope)
        return self._retrieved([location])[0] if location is not None else None

    def locate_matching(self, query: Query) -> list[InstanceLocation]:
        """Visible instances matching an IMAGE-level query."""
        return self._retrieved(self.unscoped.locate_matching(self._query(query)))

    def summary(self, scope: Scope | None = None) -> dict[str, Any]:
        """Totals and breakdowns of the visible studies."""
        return self.unscoped.summary(self.scope)

    def store_bytes(self, raw: bytes, *args: Any, **kwargs: Any) -> Any:
        """Store an instance; a study it makes gets the scope's labels, so
        that whoever stores through this view keeps seeing what they stored."""
        if self.scope is not None:
            kwargs.setdefault("labels", tuple(sorted(self.scope.labels)))
        return self.unscoped.store_bytes(raw, *args, **kwargs)

    def sees(self, study_uid: str) -> bool:
        """Whether the study is indexed and visible."""
        if self.scope is not None and not self.scope.sees(self.unscoped.labels_of(study_uid)):
            return False
        return bool(self.unscoped.count(Query(Level.STUDY, {"StudyInstanceUID": study_uid})))

    def scoped(self, scope: Scope | None, audit: AuditHook | None = None) -> Any:
        """This view (a scope is chosen once, by the door)."""
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unscoped, name)
