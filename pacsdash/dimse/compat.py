"""The one door through which pacsdash changes pynetdicom.

Importing pacsdash changes nothing in pynetdicom. :func:`install`, called
by the server (its process and each DICOM worker), by
:class:`~pacsdash.dimse.scp.DicomNode` and by the SCU helpers
(:func:`ensure`), applies the changes below to this process, once. Their
code stays beside the behaviour it serves:

- :mod:`~pacsdash.dimse.reactor`: event-driven DUL and association threads
  instead of 1 ms naps; socket reads of up to 1 MiB, bounded by the PDU
  length a peer may send (PS3.8 9.3.1);
- :mod:`~pacsdash.dimse.packing`: a message's command set and data set in
  PDUs of their own, written together (PS3.8 9.3.5, E.2); pending C-FIND
  response commands encoded once per query;
- :mod:`~pacsdash.dimse.identifiers`: C-FIND identifiers sent pre-encoded;
- :mod:`~pacsdash.dimse.contexts`: cheap copies of presentation contexts;
- :mod:`~pacsdash.dimse.protocol`: malformed P-DATA-TF PDUs aborted at
  once (PS3.8 9.2 AA-8, E.2);
- :mod:`~pacsdash.dimse.files`: stored files sent as they are by C-GET and
  C-MOVE, deflated data sets padded to even length (PS3.5 A.5), and the
  Move Originator AE title naming the C-MOVE requestor (PS3.7 9.3.1.1).

The C-STORE lane (:mod:`~pacsdash.dimse.storelane`) needs the event-driven
DUL and is attached only when it is installed.

pynetdicom's documented settings (``pynetdicom._config``: chunked sending of
stored files, identifiers kept out of the log, no per-PDU debug handlers)
are set by :func:`install` in both modes: they are configuration, not
changes to its code.

Plain mode (``[server] plain_pynetdicom = true``, or a pynetdicom other
than :data:`PYNETDICOM_VERSION`) changes nothing else. The node still
answers C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET, and keeps its own checks
(peers, admission, A-ASSOCIATE-RQ checks, C-STORE size limits, TCP_NODELAY),
but where pacsdash fixes pynetdicom, pynetdicom's behaviour is kept:

- C-GET and C-MOVE send stored files decoded and re-encoded by pydicom
  (the bytes may differ), and the SCU helpers send a deflated data set of
  odd length without its pad byte (PS3.5 A.5);
- a C-MOVE's C-STORE sub-operations name our AE title, not the requestor's,
  as Move Originator (PS3.7 9.3.1.1);
- C-STOREs go through pynetdicom's handler: a data set over its size
  limit is held in memory whole before it is refused; PDU lengths and
  malformed P-DATA-TF PDUs are not checked as they arrive (a broken
  message waits for the idle time-out instead of an A-ABORT), and an
  A-ASSOCIATE-RQ pynetdicom cannot handle may get no answer;
- every fragment of a message is its own PDU and socket write (as dcmtk
  does: GDCM reads that), and every exchange waits through pynetdicom's
  1 ms naps (slower).

The changes mirror functions of pynetdicom :data:`PYNETDICOM_VERSION`
exactly: :data:`MIRRORED` lists them with a digest of their source, and
``tests/dimse/test_compat.py`` fails, naming the function, when an upgrade
changes one. Re-read that function against the pacsdash code that mirrors
or depends on it, then update the digest and the pin.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pynetdicom

LOGGER = logging.getLogger(__name__)

#: The pynetdicom release the changes were written against, exactly.
PYNETDICOM_VERSION = "3.0.4"

#: ``pynetdicom._config`` values set by :func:`install` (in both modes).
CONFIG: dict[str, Any] = {
    # Send stored files as they are, never decoded and re-encoded.
    "STORE_SEND_CHUNKED_DATASET": True,
    # Identifiers can be large and hold patient data: keep them out of the log.
    "LOG_REQUEST_IDENTIFIERS": False,
    "LOG_RESPONSE_IDENTIFIERS": False,
    # The standard handlers log every PDU and DIMSE message at DEBUG level;
    # bound to every association they cost CPU per PDU even when that level
    # is off. pacsdash logs what matters itself.
    "LOG_HANDLER_LEVEL": "none",
}


@dataclass(frozen=True)
class Mirrored:
    """An upstream function that pacsdash code copies, replaces or relies on."""

    module: str
    qualname: str
    #: sha256 of its source in :data:`PYNETDICOM_VERSION` (:func:`upstream_source`).
    sha256: str
    #: The pacsdash code to re-check when it changes.
    by: str


MIRRORED: tuple[Mirrored, ...] = (
    Mirrored("pynetdicom.dul", "DULServiceProvider.__init__",
             "c82dafa9438ddf70685917cb15d2bfbc814aa0ad5233ffb0ae650faedc7570f0", "reactor.EventDrivenDUL.__init__"),
    Mirrored("pynetdicom.dul", "DULServiceProvider.run_reactor",
             "e3a10eb3a0931e4854af33b9496e92d9679522aca26b0e04da8967559b9e2803", "reactor.EventDrivenDUL._run"),
    Mirrored("pynetdicom.dul", "DULServiceProvider._read_pdu_data",
             "19f2d4e38c13c83586365d93dd5cd96a0c7c665cb37251054b3e1f246e9f431b",
             "reactor.EventDrivenDUL._read_pdu_data, storelane.StoreLane._receive_one/_to_pynetdicom"),
    Mirrored("pynetdicom.dul", "DULServiceProvider._send",
             "a850a7919e68484ef6751ee7a199b3ba4a911b5cbf0c2928bf796c55539254d4", "packing._send_group"),
    Mirrored("pynetdicom.dul", "DULServiceProvider.kill_dul",
             "5ceccf8dd01c2072c377d18bb1be284941a345bd40f03bd1e03a864ab0817842", "reactor.EventDrivenDUL.kill_dul"),
    Mirrored("pynetdicom.fsm", "StateMachine.do_action",
             "9a883f44c7f31641b7847b97b51a72abdd31a3c8a9d31031cae7f7d929383dd9", "reactor.EventDrivenDUL._do_action"),
    Mirrored("pynetdicom.fsm", "DT_1",
             "82e5c5d4114534fa9ac86124c7c7ef11ff2b98bc73069372cbe413af9df19081", "packing._sending_groups"),
    Mirrored("pynetdicom.fsm", "AR_7",
             "9a8d68182bf5c9fd0762295535a20ef3b1f04d83f22d47dcd55a063dbf806d40", "packing._sending_groups"),
    Mirrored("pynetdicom.association", "Association.__init__",
             "eb07516b8009ad8fa338201dea39578380fbf9f2c59fa5e368e20250eb97c4ea",
             "reactor.EventDrivenAssociation.__init__ (its DUL, dimse.msg_queue)"),
    Mirrored("pynetdicom.association", "Association.kill",
             "8f9713666a7f4cffd840899f023090e9786668945a7c844f99d7a834077c3972", "reactor.EventDrivenAssociation.kill"),
    Mirrored("pynetdicom.association", "Association.run_reactor",
             "ed8bbbe3b3d6ddaee3e8673ba25b2ab2a4c45f25bc1d8ae7b48ebafd09499e6d",
             "reactor.EventDrivenAssociation.run_reactor"),
    Mirrored("pynetdicom.association", "Association._run_reactor",
             "f28838c5559e462a563750cfc9f3790027f4bb7e2223baf42c9f5d682c359dee",
             "reactor.EventDrivenAssociation._run_reactor"),
    Mirrored("pynetdicom.association", "Association.send_c_store",
             "fa5a8127f349f8e75698f4cdf2b4dbe3f38e3e9e320a8cf45c15bf8333f9c283", "files.send_stored_file"),
    Mirrored("pynetdicom.transport", "AssociationSocket.recv",
             "6bc20a33b1b7cfe76d4ad4407ca242563bc6206fde4b4e1cf7a2fbb1f11d621d", "reactor._recv"),
    Mirrored("pynetdicom.transport", "RequestHandler.handle",
             "034823fb4df3a87467bd0d45193f0d457fcf59c87fda8e97b2edfb89426f76dd",
             "reactor (Association looked up at accept), contexts._copy_context (deepcopy)"),
    Mirrored("pynetdicom.dimse", "DIMSEServiceProvider.send_msg",
             "a839cf2fb46976d9da29cf06fea41c04416b38d14fab612af12e5d869bd5b3f0", "packing.send_msg"),
    Mirrored("pynetdicom.dimse", "DIMSEServiceProvider.receive_primitive",
             "5f99c86b14a15cefa87d914cda3591ec4d636d4c53a982e945ec9c1828c6e43f",
             "protocol._checked_receive, protocol.pdata_problem"),
    Mirrored("pynetdicom.presentation", "PresentationContext.__init__",
             "37a8842ac07cd8f364dba03f5f7a59c23a0068341873edd81d367ad0c75596d9", "contexts._copy_context"),
    Mirrored("pynetdicom.service_class", "ServiceClass._c_find_scp",
             "da242b908ef4848ceaec8937680dfe9d23705301f6bad99de6dd64786cd9a7ca",
             "identifiers._encode_for_service, packing._send_pending_find"),
    Mirrored("pynetdicom.service_class", "StorageServiceClass.SCP",
             "63afca7fc6c6e7ee6e6eb303dd6aa72c1e69dbfcb94dd91c9e90ea6d900a4c40",
             "storelane.StoreLane._finish (answers C-STOREs in its place)"),
    Mirrored("pynetdicom.service_class", "QueryRetrieveServiceClass._get_scp",
             "8ca1538e3e56c4f7317f3d8bd0d0e009d596e9f3c57027db3128ec7e728e46a6", "files.send_stored_file"),
    Mirrored("pynetdicom.service_class", "QueryRetrieveServiceClass._move_scp",
             "5c14d1be3d737befcc148893bcd529a03695e82f8f943f19b640ff4f32382742",
             "files.send_stored_file (Move Originator)"),
)


def upstream_source(module: str, qualname: str) -> str:
    """The source of ``module.qualname`` as its file has it (what
    :func:`inspect.getsource` gives for it), whether or not it is patched."""
    text = inspect.getsource(importlib.import_module(module))
    body: list[ast.stmt] = ast.parse(text).body
    node: ast.AST | None = None
    for name in qualname.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == name), None)
        if node is None:
            raise LookupError(f"{module}.{qualname} is gone")
        body = node.body  # type: ignore[attr-defined]
    assert node is not None
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])  # type: ignore[attr-defined]
    lines = text.splitlines(keepends=True)[first - 1 : node.end_lineno]  # type: ignore[attr-defined]
    return "".join(lines)


def upstream_digest(module: str, qualname: str) -> str:
    """sha256 of :func:`upstream_source`."""
    return hashlib.sha256(upstream_source(module, qualname).encode("utf-8")).hexdigest()


def changed_upstream() -> list[Mirrored]:
    """The entries of :data:`MIRRORED` whose upstream source differs from the digest (or is gone)."""
    changed = []
    for entry in MIRRORED:
        try:
            digest = upstream_digest(entry.module, entry.qualname)
        except LookupError:
            digest = ""
        if digest != entry.sha256:
            changed.append(entry)
    return changed


_MISSING = object()


@dataclass(frozen=True)
class _Patch:
    """Set ``owner.name`` (or ``owner[name]`` for a dict) to ``build(original)``."""

    owner: Any
    name: str
    build: Callable[[Any], Any]

    def get(self) -> Any:
        """The current value (a class's own attribute, not an inherited one), or _MISSING."""
        if isinstance(self.owner, dict):
            return self.owner.get(self.name, _MISSING)
        if isinstance(self.owner, type):
            return self.owner.__dict__.get(self.name, _MISSING)
        return getattr(self.owner, self.name, _MISSING)

    def set(self, value: Any) -> None:
        if isinstance(self.owner, dict):
            if value is _MISSING:
                self.owner.pop(self.name, None)
            else:
                self.owner[self.name] = value
        elif value is _MISSING:
            delattr(self.owner, self.name)
        else:
            setattr(self.owner, self.name, value)


def _patches() -> list[_Patch]:
    """What :func:`install` changes, in order (imported here, so that importing
    the modules that hold the code changes nothing)."""
    import pynetdicom.ae
    import pynetdicom.association
    import pynetdicom.fsm
    import pynetdicom.service_class
    from pynetdicom.dimse import DIMSEServiceProvider
    from pynetdicom.presentation import PresentationContext
    from pynetdicom.transport import AssociationSocket

    from pacsdash.dimse import contexts, files, identifiers, packing, protocol, reactor

    def fsm_action(name: str) -> _Patch:
        def build(original: tuple[str, Any, str]) -> tuple[str, Any, str]:
            description, function, next_state = original
            return description, packing._sending_groups(function, next_state), next_state  # noqa: SLF001
        return _Patch(pynetdicom.fsm.ACTIONS, name, build)

    return [
        # The base class, before the reactor replaces the module's name for it.
        _Patch(pynetdicom.association.Association, "send_c_store", files.send_stored_file),
        _Patch(pynetdicom.association, "DULServiceProvider", lambda _: reactor.EventDrivenDUL),
        _Patch(pynetdicom.association, "Association", lambda _: reactor.EventDrivenAssociation),  # acceptors
        _Patch(pynetdicom.ae, "Association", lambda _: reactor.EventDrivenAssociation),  # requestors
        _Patch(AssociationSocket, "recv", lambda _: reactor._recv),  # noqa: SLF001
        _Patch(DIMSEServiceProvider, "send_msg", lambda _: packing.send_msg),
        # The two actions that send a P-DATA-TF PDU: Sta6 + Evt9, Sta8 + Evt9 (PS3.8 9.2).
        fsm_action("DT-1"),
        fsm_action("AR-7"),
        _Patch(DIMSEServiceProvider, "receive_primitive", protocol._checked_receive),  # noqa: SLF001
        _Patch(pynetdicom.service_class, "encode", identifiers._encode_for_service),  # noqa: SLF001
        _Patch(PresentationContext, "__deepcopy__", lambda _: contexts._copy_context),  # noqa: SLF001
    ]


_lock = threading.RLock()
#: (patch, original) of each change applied, or None when none is.
_applied: list[tuple[_Patch, Any]] | None = None
#: ``pynetdicom._config`` values before :func:`install` set them.
_config_before: dict[str, Any] | None = None
#: The mode chosen by the last :func:`install` (None: not called yet).
_plain: bool | None = None


def _configure() -> None:
    global _config_before
    from pynetdicom import _config

    if _config_before is None:
        _config_before = {name: getattr(_config, name, _MISSING) for name in CONFIG}
    for name, value in CONFIG.items():
        setattr(_config, name, value)


def install(plain: bool = False) -> bool:
    """Apply pacsdash's changes to pynetdicom in this process (idempotent, thread-safe).

    Parameters
    ----------
    plain
        Run on pynetdicom as released (``[server] plain_pynetdicom``): apply
        only the ``_config`` settings, and undo the changes if an earlier
        call applied them.

    Returns
    -------
    bool
        Whether the changes are installed. False also when the running
        pynetdicom is not :data:`PYNETDICOM_VERSION`, which is logged: code
        mirrored from one release is not applied to another.
    """
    global _applied, _plain
    with _lock:
        _configure()
        if not plain and pynetdicom.__version__ != PYNETDICOM_VERSION:
            LOGGER.warning(
                "pynetdicom %s is running, but pacsdash's changes to it mirror pynetdicom %s exactly: "
                "running on plain pynetdicom (slower; C-MOVE/C-GET re-encode stored files). Install "
                "pynetdicom==%s, or check pacsdash/dimse/compat.py against this version.",
                pynetdicom.__version__, PYNETDICOM_VERSION, PYNETDICOM_VERSION)
            plain = True
        if plain and _plain is not True:
            LOGGER.info("running on plain pynetdicom %s, without pacsdash's changes to it", pynetdicom.__version__)
        _plain = plain
        if plain:
            _undo()
            return False
        if _applied is None:
            applied: list[tuple[_Patch, Any]] = []
            for patch in _patches():
                original = patch.get()
                patch.set(patch.build(None if original is _MISSING else original))
                applied.append((patch, original))
            _applied = applied
            LOGGER.debug("pacsdash's changes to pynetdicom %s installed", PYNETDICOM_VERSION)
        return True


def _undo() -> None:
    global _applied
    if _applied is not None:
        for patch, original in reversed(_applied):
            patch.set(original)
        _applied = None


def uninstall() -> None:
    """Undo :func:`install` (changes and ``_config`` values); mainly for tests.

    Associations already running keep the classes they were created with.
    """
    global _config_before, _plain
    with _lock:
        _undo()
        if _config_before is not None:
            from pynetdicom import _config

            for name, value in _config_before.items():
                if value is _MISSING:
                    delattr(_config, name)
                else:
                    setattr(_config, name, value)
            _config_before = None
        _plain = None


def installed() -> bool:
    """Whether the changes are installed in this process."""
    return _applied is not None


def ensure() -> bool:
    """:func:`install` in the mode this process chose already (the server's
    ``plain_pynetdicom``), or with the changes if none was chosen yet; for
    the SCU helpers, which may run inside a server or alone (the CLI)."""
    with _lock:
        return install(plain=bool(_plain))
