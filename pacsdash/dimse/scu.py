"""Service class user helpers: C-ECHO and C-STORE to a peer.

Files are sent as they are stored (pynetdicom's chunked sending: the data set
bytes are never decoded and re-encoded), each in its own transfer syntax.
Both helpers install pacsdash's changes to pynetdicom in the mode this
process chose (:func:`pacsdash.dimse.compat.ensure`).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from pacsdash.archive import InstanceLocation
from pacsdash.dimse import compat
from pacsdash.dimse.files import StoredInstance
from pacsdash.dimse.sockets import NODELAY_HANDLERS

LOGGER = logging.getLogger(__name__)
MAX_CONTEXTS = 128


class AssociationFailed(ConnectionError):
    """The peer could not be reached or refused the association."""


@dataclass(frozen=True)
class SendResult:
    """What became of one file sent with C-STORE."""

    path: Path | str  # a file's path, or a stored instance's SOP Instance UID
    status: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        """Success (0000) or a warning (0001, Bxxx)."""
        return self.status is not None and (self.status == 0 or self.status == 1 or (self.status >> 12) == 0xB)


def iter_files(paths: Iterable[Path | str]) -> Iterator[Path]:
    """Files named, and files under folders named (recursively, sorted)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield Path(root) / name
        else:
            yield path


def echo(host: str, port: int, called_aet: str = "ANY-SCP", calling_aet: str = "PACSDASH-SCU", timeout: float = 10) -> int:
    """C-ECHO the peer; return its status (0 is success).

    Raises
    ------
    AssociationFailed
        If no association could be made.
    """
    compat.ensure()
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=NODELAY_HANDLERS)
    if not assoc.is_established:
        raise AssociationFailed(_why_not(assoc, host, port, called_aet))
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if "Status" not in status:
        raise AssociationFailed("the peer sent no C-ECHO response")
    return int(status.Status)


def _name(item: Path | StoredInstance) -> Path | str:
    """What a :class:`SendResult` names: the file's path, or the stored instance's UID."""
    return str(item.location.SOPInstanceUID) if isinstance(item, StoredInstance) else item


@contextmanager
def _sendable(item: Path | StoredInstance) -> Iterator[Path]:
    """A file name for pynetdicom's chunked sending: a file's own path, or
    the stored bytes of an instance while they are open (raises MissingFile
    or DamagedFile, OSErrors, when they cannot be sent as received)."""
    if isinstance(item, StoredInstance):
        with item.sendable() as path:
            yield path
    else:
        yield item


def _why_not(assoc, host: str, port: int, called_aet: str) -> str:
    if assoc.is_rejected:
        return f"{called_aet}@{host}:{port} rejected the association"
    if assoc.acceptor.primitive is not None:
        return f"{called_aet}@{host}:{port} aborted the association"
    return f"could not connect to {called_aet}@{host}:{port} (nothing listening, or it hung up)"


def send_files(
    host: str,
    port: int,
    files: Sequence[Path | tuple[InstanceLocation, Callable[[], BinaryIO]]],
    called_aet: str = "ANY-SCP",
    calling_aet: str = "PACSDASH-SCU",
    on_result: Callable[[SendResult], None] | None = None,
    timeout: float = 60,
    tls_args: tuple[ssl.SSLContext, str | None] | None = None,
) -> list[SendResult]:
    """C-STORE each file to the peer; return one result per file.

    ``files`` are files on disk (``pacsdash send``) or stored instances as
    ``(location, opener)``, ``opener()`` giving the stored bytes as a stream
    (:meth:`Archive.open <pacsdash.archive.Archive.open>`), called as each is
    sent (``send`` from the dashboard or the API); a stored instance whose
    file is missing or damaged fails alone.

    ``tls_args``: (client context, server host name) to call over TLS
    (PS3.15 B.1), as pynetdicom's ``AE.associate`` takes them.

    Files that are not DICOM Part 10 fail without stopping the others. Files
    are grouped so that each association needs at most 128 presentation
    contexts.

    Raises
    ------
    AssociationFailed
        If the peer cannot be reached at all.
    """
    results: list[SendResult] = []

    def report(result: SendResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    groups: list[list[tuple[Path | StoredInstance, tuple[str, str]]]] = [[]]
    group_pairs: list[set[tuple[str, str]]] = [set()]
    for path in files:
        if isinstance(path, tuple):
            path = StoredInstance(path[1], path[0])
        if isinstance(path, StoredInstance):
            pair = (str(path.location.SOPClassUID), str(path.location.TransferSyntaxUID))
        else:
            try:
                meta = read_file_meta_info(path)
                pair = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
            except (InvalidDicomError, AttributeError, OSError, ValueError) as exc:
                report(SendResult(path, None, f"not a DICOM Part 10 file: {exc}"))
                continue
        if pair not in group_pairs[-1] and len(group_pairs[-1]) >= MAX_CONTEXTS:
            groups.append([])
            group_pairs.append(set())
        groups[-1].append((path, pair))
        group_pairs[-1].add(pair)

    for group, pairs in zip(groups, group_pairs):
        if not group:
            continue
        compat.ensure()
        ae = AE(ae_title=calling_aet)
        ae.acse_timeout = ae.network_timeout = 30
        ae.dimse_timeout = timeout
        contexts = [build_context(sop, [ts]) for sop, ts in sorted(pairs)]
        assoc = ae.associate(host, port, contexts=contexts, ae_title=called_aet, evt_handlers=NODELAY_HANDLERS,
                             tls_args=tls_args)
        if not assoc.is_established:
            raise AssociationFailed(_why_not(assoc, host, port, called_aet))
        accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
        try:
            for item, pair in group:
                path = _name(item)
                if pair not in accepted:
                    report(SendResult(path, None, f"the peer did not accept SOP class {pair[0]} in transfer syntax {pair[1]}"))
                    continue
                if not assoc.is_established:
                    report(SendResult(path, None, "the association was lost"))
                    continue
                try:
                    with _sendable(item) as source:
                        status = assoc.send_c_store(source)
                except (OSError, ValueError, AttributeError, RuntimeError) as exc:
                    report(SendResult(path, None, str(exc)))
                    continue
                if "Status" not in status:
                    report(SendResult(path, None, "no response from the peer (timeout or abort)"))
                    continue
                comment = str(status.get("ErrorComment", ""))
                report(SendResult(path, int(status.Status), comment))
        finally:
            if assoc.is_established:
                assoc.release()
    return results
