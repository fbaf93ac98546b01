"""Actions on studies, in one place, each taking who asked.

Send, delete, anonymize and export are done here and only here: the doors
(JSON API, dashboard, command line) parse a request, name the
:class:`Actor`, call :class:`StudyActions` and show the result. Each action
is logged; anonymizations and exports are also kept as
:class:`~pacsdash.archive.records.ActionRecord` in the index. Checks of who
may do what, and the audit trail, have this one place to hook into.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pacsdash.archive.attributes import Level
from pacsdash.archive.query import Scope
from pacsdash.archive.records import ActionRecord

LOGGER = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


class ActionError(Exception):
    """An action that cannot be done; ``status`` is the HTTP code a door answers."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Actor:
    """Who asks: a user (HTTP, dashboard), a DICOM peer, or the local command line."""

    name: str
    kind: str = "user"  # user | peer | local
    address: str = ""
    #: The studies this actor may see and act on (None: every study).
    scope: Scope | None = None

    @property
    def origin(self) -> str:
        """How instances this actor makes are recorded as received (``anonymize:editor``)."""
        return f"{self.kind}:{self.name}"


@dataclass
class SendSummary:
    """The outcome of sending a study to a registered peer."""

    modality: str
    sent: int
    failed: int
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"modality": self.modality, "sent": self.sent, "failed": self.failed, "errors": self.errors[:20]}


class StudyActions:
    """Send, delete, anonymize and export studies of one archive.

    Parameters
    ----------
    archive
        The archive acted on.
    home
        The home folder (the research project's secret lives there).
    accounts
        Registered peers, for :meth:`send`.
    calling_aet
        Our AE title when sending.
    sender
        ``sender(host, port, files, called_aet, calling_aet) -> results``
        (C-STORE; :func:`pacsdash.dimse.scu.send_files`), given by the
        server so that the archive does not depend on DIMSE; ``files`` are
        ``(location, opener)`` pairs, ``opener()`` the stored bytes as a
        stream (:meth:`Archive.open <pacsdash.archive.Archive.open>`).
    """

    def __init__(self, archive: Any, home: Path, accounts: Any = None, calling_aet: str = "PACSDASH",
                 sender: Callable[..., list] | None = None) -> None:
        self.archive = archive
        self.home = Path(home)
        self.accounts = accounts
        self.calling_aet = calling_aet
        self.sender = sender
        self._pseudonyms = None
        self._lock = threading.Lock()

    # -- the research project's pseudonyms ----------------------------------------
    def pseudonymizer(self) -> Any:
        from pacsdash.research.pseudonyms import Pseudonymizer

        with self._lock:
            if self._pseudonyms is None:
                self._pseudonyms = Pseudonymizer.for_home(self.home)
            return self._pseudonyms

    def deidentifier(self, options: Iterable[str] | None) -> Any:
        """A de-identifier for option names (None: the default options).

        Raises
        ------
        ActionError
            For an unknown option or a forbidden combination.
        """
        from pacsdash.research.deidentify import Deidentifier
        from pacsdash.research.options import DEFAULT_OPTIONS, Option

        try:
            chosen = DEFAULT_OPTIONS if options is None else frozenset(Option.parse(o) for o in options)
            return Deidentifier(self.pseudonymizer(), chosen)
        except ValueError as exc:
            raise ActionError(str(exc)) from None

    def _remember(self, seen: dict[str, tuple[str, str]]) -> None:
        if seen:
            self.archive.remember_subjects([(p, pid, issuer) for p, (pid, issuer) in seen.items()])

    @staticmethod
    def _collector() -> tuple[dict[str, tuple[str, str]], Callable[[str, str, str], None]]:
        seen: dict[str, tuple[str, str]] = {}

        def note(pseudonym: str, patient_id: str, issuer: str) -> None:
            seen.setdefault(pseudonym, (patient_id, issuer))

        return seen, note

    # -- actions -------------------------------------------------------------------
    def send(self, study_uid: str, modality: str, actor: Actor) -> SendSummary:
        """C-STORE every instance of a study to a registered peer (PS3.4 B.2)."""
        peer = self.accounts.modality(str(modality)) if self.accounts is not None else None
        if peer is None:
            raise ActionError(f"no modality named {str(modality)[:64]!r}", 404)
        locations = self.archive.scoped(actor.scope).locate(Level.STUDY, study_uid)
        if not locations:
            raise ActionError("no such study", 404)
        if self.sender is None:
            raise ActionError("sending is not available here", 501)
        stored = [(loc, partial(self.archive.open, loc)) for loc in locations]  # opened one at a time, as sent
        where = {"modality": peer.name, "aet": peer.aet, "host": peer.host, "port": peer.port}
        try:
            results = self.sender(peer.host, peer.port, stored, peer.aet, self.calling_aet)
        except Exception as exc:  # the peer could not be reached at all
            self._audit(actor, "send", [study_uid], False, {**where, "error": str(exc)[:500]})
            if type(exc).__name__ != "AssociationFailed":
                raise
            LOGGER.warning("send by %s of study %s to %s failed: %s", actor.origin, study_uid, peer.name, exc)
            raise ActionError(f"{peer.name}: {exc}", 502) from None
        failed = [r for r in results if not r.ok]
        self._audit(actor, "send", [study_uid], not failed,
                    {**where, "sent": len(results) - len(failed), "failed": len(failed)})
        LOGGER.info("send by %s of study %s to %s: %d sent, %d failed", actor.origin, study_uid, peer.name,
                    len(results) - len(failed), len(failed))
        return SendSummary(peer.name, len(results) - len(failed), len(failed),
                           [r.error or f"status 0x{r.status:04X}" for r in failed])

    def delete(self, study_uid: str, actor: Actor) -> int:
        """Remove a study and its files; return how many instances."""
        if not self.archive.scoped(actor.scope).sees(study_uid):
            raise ActionError("no such study", 404)
        removed = self.archive.delete_study(study_uid)
        if not removed:
            raise ActionError("no such study", 404)
        self._audit(actor, "delete", [study_uid], True, {"instances": removed})
        LOGGER.info("delete by %s of study %s: %d instances", actor.origin, study_uid, removed)
        return removed

    def _audit(self, actor: Actor, action: str, studies: list[str], succeeded: bool, details: dict[str, Any]) -> None:
        """One entry of the audit trail (PS3.15 A.5.3); a failure to write it is logged, never the action's."""
        try:
            self.archive.record(ActionRecord(actor=actor.name, address=actor.address, action=action,
                                             studies=studies, outcome="success" if succeeded else "failure",
                                             details=details))
        except Exception:
            LOGGER.warning("audit: could not record the %s by %s", action, actor.origin, exc_info=True)

    def anonymize(self, study_uid: str, actor: Actor, options: Iterable[str] | None = None,
                  include_burned_in: bool = False, progress: Progress | None = None) -> Any:
        """Store a de-identified copy of a study (PS3.15 Annex E); return what it gave."""
        from pacsdash.research.anonymize import NoSuchStudy, anonymize_study

        deidentifier = self.deidentifier(options)
        seen, note = self._collector()
        try:
            result = anonymize_study(self.archive.scoped(actor.scope), study_uid, deidentifier,
                                     f"anonymize:{actor.name}", include_burned_in, progress, note)
        except NoSuchStudy:
            raise ActionError("no such study", 404) from None
        self._remember(seen)
        if result.stored or result.duplicates:
            # The copy is for the same people as the original: it keeps its labels.
            for label in self.archive.labels_of(study_uid):
                self.archive.add_label(result.StudyInstanceUID, label)
        self.archive.record(ActionRecord(
            actor=actor.name, address=actor.address, action="anonymize", studies=[study_uid],
            details={"profile": "basic", "method": deidentifier.method,
                     "options": sorted(o.value for o in deidentifier.options), "new_study": result.StudyInstanceUID,
                     "stored": result.stored, "duplicates": result.duplicates, "excluded": len(result.excluded)}))
        LOGGER.info("anonymize by %s of study %s -> %s: %d stored, %d duplicates, %d left out", actor.origin,
                    study_uid, result.StudyInstanceUID, result.stored, result.duplicates, len(result.excluded))
        return result

    def export(self, request: Any, actor: Actor, progress: Progress | None = None) -> Any:
        """Write a cohort out (see :mod:`pacsdash.research.export`); return its summary."""
        from pacsdash.research.export import Exporter, ExportError

        deidentifier = self.deidentifier([o.value for o in request.options]) if request.anonymize else None
        seen, note = self._collector()
        try:
            summary = Exporter(self.archive.scoped(actor.scope), request, deidentifier, progress, note).run()
        except ExportError as exc:
            raise ActionError(str(exc)) from None
        self._remember(seen)
        self.archive.record(ActionRecord(
            actor=actor.name, address=actor.address, action="export", studies=summary.studies,
            details={"format": request.format.value, "anonymized": request.anonymize,
                     "options": sorted(o.value for o in request.options) if request.anonymize else [],
                     "method": deidentifier.method if deidentifier else "", "where": request.where,
                     "out": str(request.out), "files": summary.files, "left_out": summary.left_out,
                     "instances": summary.instances}))
        LOGGER.info("export by %s of %d studies to %s (%s%s): %d files, %d left out", actor.origin,
                    len(summary.studies), request.out, request.format.value,
                    ", anonymized" if request.anonymize else "", summary.files, summary.left_out)
        return summary

    def labels(self, study_uid: str, actor: Actor) -> list[str]:
        """The labels of a study the actor may see."""
        if not self.archive.scoped(actor.scope).sees(study_uid):
            raise ActionError("no such study", 404)
        return self.archive.labels_of(study_uid)

    def add_label(self, study_uid: str, label: str, actor: Actor) -> bool:
        """Give a study a label (True if it did not have it); a ``label_change`` in the audit trail."""
        return self._change_label(study_uid, label, actor, adding=True)

    def remove_label(self, study_uid: str, label: str, actor: Actor) -> bool:
        """Take a label from a study (True if it had it); a ``label_change`` in the audit trail."""
        return self._change_label(study_uid, label, actor, adding=False)

    def _change_label(self, study_uid: str, label: str, actor: Actor, adding: bool) -> bool:
        from pacsdash.config import ConfigError, check_label

        try:
            check_label(label, "label")
        except ConfigError as exc:
            raise ActionError(str(exc)) from None
        if not self.archive.scoped(actor.scope).sees(study_uid):
            raise ActionError("no such study", 404)
        try:
            changed = (self.archive.add_label if adding else self.archive.remove_label)(study_uid, label)
        except KeyError:
            raise ActionError("no such study", 404) from None
        self.archive.record(ActionRecord(
            actor=actor.name, address=actor.address, action="label_change", studies=[study_uid],
            details={"label": label, "change": "add" if adding else "remove", "changed": changed}))
        LOGGER.info("label %s by %s of study %s: %s%s", "add" if adding else "remove", actor.origin, study_uid,
                    label, "" if changed else " (no change)")
        return changed

    def lookup(self, pseudonym: str) -> dict[str, str] | None:
        """Whom a subject pseudonym stands for (admins only; never exported)."""
        return self.archive.subject(pseudonym)
