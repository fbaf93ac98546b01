"""The DICOM node: C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET service class provider.

Each DIMSE event has one handler, a thin adapter onto :class:`Archive`. Peers
are recognised by calling AE title AND address against the registered
modalities (CONTRACT.md, :mod:`pacsdash.dimse.peers`): unknown peers may only
echo and store (and store only when ``[server] accept_unknown_store`` is
true); an association from an unknown peer that proposes nothing it may use
is rejected with "calling AE title not recognised" (PS3.8 9.3.4), and a
find/move/get from a peer not allowed it is answered "Refused: Not
Authorized". An A-ASSOCIATE-RQ addressed to another called AE title, or
malformed, is rejected, and so is one beyond the limits of
:mod:`pacsdash.dimse.admission`; malformed P-DATA-TF PDUs are aborted
(:mod:`pacsdash.dimse.protocol`). C-STOREs have a size limit, and unknown
peers a quota (PS3.4 B.2.3, Refused: Out of Resources).

The node runs with pacsdash's changes to pynetdicom
(:mod:`pacsdash.dimse.compat`) unless ``[server] plain_pynetdicom`` is true.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from multiprocessing import reduction
from multiprocessing.connection import Connection
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any
from weakref import WeakKeyDictionary

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, AllTransferSyntaxes
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import AllStoragePresentationContexts, build_context
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from pacsdash.access import Accounts
from pacsdash.archive import Archive, InstanceLocation, InvalidQuery, Level, StoredFileError, audit
from pacsdash.archive.outcomes import OUTCOMES, StoreOutcome, classify
from pacsdash.archive.query import Query
from pacsdash.access.grants import Grant
from pacsdash.config import ModalitySettings, ServerSettings
from pacsdash.dimse import compat, contexts, protocol
from pacsdash.dimse.admission import Admission, Limits, StoreQuota
from pacsdash.dimse.peers import PeerPolicy
from pacsdash.dimse.identifiers import ResponseBuilder, query_from_identifier
from pacsdash.dimse.secure import TlsListener
from pacsdash.dimse.files import MoveOriginator, StoredInstance
from pacsdash.dimse import reactor
from pacsdash.dimse.sockets import NODELAY_HANDLERS
from pacsdash.dimse.status import Status
from pacsdash.dimse.storelane import StoreLane
from pacsdash.traffic.dimse import DimseTap
from pacsdash.traffic.recorder import TrafficSink

LOGGER = logging.getLogger(__name__)

TRANSFER_SYNTAXES = [str(uid) for uid in AllTransferSyntaxes]
UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
QUERY_MODELS = {
    "find": [PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind],
    "move": [PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove],
    "get": [PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet],
}
_STORAGE_CLASSES = {cx.abstract_syntax for cx in AllStoragePresentationContexts}
_UNKNOWN_ALLOWED = {str(Verification)} | _STORAGE_CLASSES


def describe_peer(event: Event) -> str:
    """``AET@host:port`` of the association's requestor, for logs and origins."""
    return describe_requestor(event.assoc)


def describe_requestor(assoc: Association) -> str:
    """``AET@host:port`` of an association's requestor."""
    req = assoc.requestor
    return f"{req.ae_title}@{req.address}:{req.port}"


#: A-ASSOCIATE-RJ (Result, Source, Reason), PS3.8 9.3.4: rejected-permanent,
#: service user, calling AE title not recognised / called AE title not recognised.
CALLING_AET_UNKNOWN = (0x01, 0x01, 0x03)
CALLED_AET_UNKNOWN = (0x01, 0x01, 0x07)
#: Rejected-permanent, service provider (ACSE related), no reason given.
MALFORMED_REQUEST = (0x01, 0x02, 0x01)
MB = 1 << 20


@dataclass(frozen=True)
class Caller:
    """Who an association's requestor is, decided once when it asks to associate."""

    aet: str
    address: str
    #: The registered peer it is (AE title and address match), or None.
    peer: ModalitySettings | None
    #: What it may ask and see (:mod:`pacsdash.access.grants`).
    grant: Grant


class _NodeServer(ThreadedAssociationServer):
    """pynetdicom's threaded association server; connections accepted on
    the TLS port (:class:`~pacsdash.dimse.secure.TlsListener`) do their
    handshake in their own thread before they are served (PS3.15 B.1)."""

    tls: TlsListener | None = None

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if self.tls is not None and self.tls.speaks_tls(request):
            peer = ":".join(str(part) for part in tuple(client_address)[:2])
            request = self.tls.handshake(request, peer)
            if request is None:
                return
        super().process_request_thread(request, client_address)


class _HandedOffServer(_NodeServer):
    """An association server that does not listen: the server process accepts
    each connection (on the plain and the TLS port) and hands its socket over
    a pipe (SCM_RIGHTS), so that it can spread associations evenly over
    worker processes."""

    handoff: Connection

    def server_bind(self) -> None:
        pass

    def server_activate(self) -> None:
        pass

    def fileno(self) -> int:
        return self.handoff.fileno()

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            fd = reduction.recv_handle(self.handoff)
        except EOFError:
            time.sleep(0.1)  # the server process is gone; the worker is stopping
            raise OSError("the connection hand-off pipe is closed") from None
        sock = socket.socket(fileno=fd)
        sock.settimeout(None)
        return sock, sock.getpeername()


class _NodeAE(AE):
    """pynetdicom's AE, its servers doing TLS handshakes in their connections'
    threads, optionally taking connections from a hand-off pipe."""

    handoff: Connection | None = None
    #: The TLS port of the next server :meth:`make_server` makes, or None.
    tls: TlsListener | None = None

    def make_server(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("server_class") is not ThreadedAssociationServer:
            return super().make_server(*args, **kwargs)
        kwargs["server_class"] = _HandedOffServer if self.handoff is not None else _NodeServer
        server = super().make_server(*args, **kwargs)
        server.tls = self.tls  # read once serving starts, as the hand-off pipe
        if self.handoff is not None:
            server.handoff = self.handoff
        return server


class DicomNode:
    """The DIMSE listener of one pacsdash server (or of one of its workers)."""

    def __init__(
        self, archive: Archive, accounts: Accounts, server: ServerSettings, handoff: Connection | None = None,
        traffic: TrafficSink | None = None, traffic_prefix: str | None = None,
    ) -> None:
        compat.install(plain=server.plain_pynetdicom)  # idempotent; the server calls it first
        self.archive = archive
        self.settings = server
        self.policy = PeerPolicy(accounts, server.accept_unknown_store, check_address=server.check_peer_address)
        #: Who each association's requestor is (see :meth:`handle_association_request`).
        self._callers: WeakKeyDictionary[Association, Caller] = WeakKeyDictionary()
        #: Whether each association's peer may store, decided at its first C-STORE.
        self._may_store: WeakKeyDictionary[Association, bool] = WeakKeyDictionary()
        self.admission = Admission(Limits(server.max_associations, server.reserved_associations,
                                          server.max_associations_per_address))
        self.quota = StoreQuota(server.unknown_store_quota_mb * MB)
        self.ae = _NodeAE(ae_title=server.aet)
        self.ae.handoff = handoff
        # pynetdicom counts connections that have not associated yet, and then
        # refuses everyone: the limits that matter are the admission's.
        self.ae.maximum_associations = 8 * server.max_associations
        self.ae.network_timeout = server.network_timeout
        self.ae.acse_timeout = server.acse_timeout
        self.ae.dimse_timeout = 60
        self.ae.maximum_pdu_size = 0  # no limit on what the peer may send
        self.ae.add_supported_context(Verification, TRANSFER_SYNTAXES)
        for cx in AllStoragePresentationContexts:
            self.ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        for models in QUERY_MODELS.values():
            for model in models:
                self.ae.add_supported_context(model, TRANSFER_SYNTAXES)
        self.server: ThreadedAssociationServer | None = None
        #: The listener on ``dicom_tls_port`` (in-process node), or None.
        self.tls_server: ThreadedAssociationServer | None = None
        #: Records associations and DIMSE messages (:mod:`pacsdash.traffic`), or None.
        self.tap = DimseTap(traffic, traffic_prefix) if traffic is not None else None
        #: Queries and retrievals in the audit trail (PS3.15 A.5.3.9, A.5.3.3), written in the background.
        self.audit = audit.request_recorder(archive)

    @property
    def port(self) -> int:
        """The port actually listened on (useful when asked for port 0)."""
        if self.server is None:
            raise RuntimeError("the DICOM node is not started")
        return int(self.server.server_address[1])

    @property
    def tls_port(self) -> int | None:
        """The DICOM over TLS port (``dicom_tls_port``), or None when there is none."""
        return self.settings.dicom_tls_port or None

    def start(self) -> None:
        """Start listening in background threads: on ``dicom_port`` and, with
        ``dicom_tls_port``, for DICOM over TLS there (PS3.15 B.1). A node
        given a hand-off pipe listens on neither: the server process hands
        it connections accepted on both."""
        handlers = NODELAY_HANDLERS + [
            (evt.EVT_CONN_OPEN, self.handle_connection),
            (evt.EVT_REQUESTED, self.handle_association_request),
            (evt.EVT_ESTABLISHED, self.attach_store_lane),
            (evt.EVT_C_ECHO, self.handle_echo),
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_C_FIND, self.handle_find),
            (evt.EVT_C_MOVE, self.handle_move),
            (evt.EVT_C_GET, self.handle_get),
        ]
        if self.tap is not None:
            handlers += self.tap.handlers()
        host = self.settings.host
        tls = TlsListener.from_settings(self.settings)
        self.ae.tls = tls if self.ae.handoff is not None else None  # the worker's one server serves both
        self.server = self.ae.start_server((host, self.settings.dicom_port), block=False, evt_handlers=handlers)
        if tls is not None and self.ae.handoff is None:
            self.ae.tls = tls
            self.tls_server = self.ae.start_server((host, tls.port), block=False, evt_handlers=handlers)
            self.ae.tls = None
            LOGGER.info("DICOM node %s listening for DICOM over TLS on %s:%d%s", self.settings.aet, host,
                        tls.port, " (client certificates required)" if self.settings.tls_client_ca else "")
        LOGGER.info("DICOM node %s listening on %s:%d", self.settings.aet, host, self.port)

    def stop(self) -> None:
        """Stop listening and abort open associations (A-ABORT, PS3.8 7.3): a peer
        whose C-STORE can no longer be answered hears so at once and sends it
        again later, instead of waiting for its own time-out."""
        for server in (self.tls_server, self.server):
            if server is not None:
                for assoc in list(server.active_associations):
                    try:
                        assoc.abort()
                    except Exception:  # already ending
                        LOGGER.debug("abort of an association while stopping failed", exc_info=True)
                server.shutdown()
        self.server = self.tls_server = None

    # -- association -------------------------------------------------------
    def handle_connection(self, event: Event) -> None:
        """EVT_CONN_OPEN: count a new connection as pending and bound its waits.

        Until its A-ASSOCIATE-RQ is handled a caller may stall a read for at
        most the ACSE time-out and send PDUs of at most
        :data:`~pacsdash.dimse.protocol.MAX_PDU_BEFORE_ASSOCIATION` bytes.
        """
        assoc = event.assoc
        if not assoc.is_acceptor:
            return
        wrapper = assoc.dul.socket
        sock = getattr(wrapper, "socket", None)
        if sock is None:
            return
        wrapper.pdu_limit = protocol.MAX_PDU_BEFORE_ASSOCIATION
        protocol.bound_socket(sock, self.settings.acse_timeout, self.settings.network_timeout)
        self.admission.connected(assoc, str(assoc.requestor.address))

    def handle_association_request(self, event: Event) -> None:
        """EVT_REQUESTED: accept the A-ASSOCIATE-RQ, or reject it (PS3.8 9.3.4) when
        it is addressed to another AE title, is malformed, comes from an unknown
        peer that may not do what it proposes, or is beyond the admission limits."""
        assoc = event.assoc
        try:
            self._consider_request(assoc)
        except Exception:  # a handler that raises would let pynetdicom accept
            LOGGER.exception("could not decide on an association request from %s", assoc.requestor.address)
            self._reject(assoc, MALFORMED_REQUEST, "association request could not be handled")

    def _consider_request(self, assoc: Association) -> None:
        primitive = assoc.requestor.primitive
        address = str(assoc.requestor.address)
        calling = str(primitive.calling_ae_title or "").strip()
        called = str(primitive.called_ae_title or "").strip()
        if called != self.settings.aet:
            LOGGER.warning("rejecting association from %r at %s: called AE title %r is not ours (%r)",
                           calling, address, called, self.settings.aet)
            self._reject(assoc, CALLED_AET_UNKNOWN, "called AE title not recognised")
            return
        problem = protocol.request_problem(primitive)
        if problem is not None:
            LOGGER.warning("rejecting association from %r at %s: %s", calling, address, problem)
            self._reject(assoc, MALFORMED_REQUEST, problem)
            return
        peer = self.policy.peer(calling, address)
        self._callers[assoc] = Caller(calling, address, peer, self.policy.grant(calling, peer))
        if peer is None:
            proposed = {str(cx.abstract_syntax) for cx in primitive.presentation_context_definition_list}
            allowed = _UNKNOWN_ALLOWED if self.policy.accept_unknown_store else {str(Verification)}
            if not proposed & allowed:  # C-ECHO is answered for anyone: network checks need it
                LOGGER.warning("rejecting association from unregistered AE %r at %s (proposed %d contexts)",
                               calling, address, len(proposed))
                self._reject(assoc, CALLING_AET_UNKNOWN, "calling AE title not recognised")
                return
        refusal = self.admission.requested(assoc, address, registered=peer is not None)
        if refusal is not None:
            LOGGER.warning("rejecting association from %r at %s: local limit exceeded (%s)",
                           calling, address, self.admission.counts())
            self._reject(assoc, refusal, "local limit exceeded")
            return
        contexts.prefer_requestor_order(assoc)

    def _reject(self, assoc: Association, reason: tuple[int, int, int], text: str) -> None:
        """Send an A-ASSOCIATE-RJ (result, source, reason; PS3.8 9.3.4) and end the association."""
        self.admission.forget(assoc)
        if self.tap is not None:
            self.tap.rejected(assoc, text)
        assoc.acse.send_reject(*reason)
        assoc.kill()

    def caller(self, assoc: Association) -> Caller:
        """Who ``assoc``'s requestor is (decided when it asked to associate)."""
        caller = self._callers.get(assoc)
        if caller is None:
            aet, address = assoc.requestor.ae_title.strip(), str(assoc.requestor.address)
            peer = self.policy.peer(aet, address)
            caller = self._callers[assoc] = Caller(aet, address, peer, self.policy.grant(aet, peer))
        return caller

    def archive_for(self, assoc: Association) -> Any:
        """The archive as ``assoc``'s peer may see it: a peer registered with
        labels sees only studies holding one of them (CONTRACT.md ``--labels``)."""
        return self.archive.scoped(self.caller(assoc).grant.scope)

    def _audit(self, event: Event, action: str, succeeded: bool, studies: Iterable[str], query: str = "") -> None:
        """A query or retrieval by the association's peer, in the audit trail."""
        caller = self.caller(event.assoc)
        details: dict[str, Any] = {"service": _SERVICES.get(event.event, "DIMSE"), "called_aet": self.settings.aet}
        if query:
            details["query"] = query[:1000]
        self.audit(caller.aet, caller.address, action, succeeded, sorted(set(studies))[:1000], details)

    def allows(self, assoc: Association, service: str) -> bool:
        """Whether ``assoc``'s requestor may ``store``/``find``/``move``/``get`` (its grant)."""
        return self.caller(assoc).grant.may_service(service)

    def store_limit(self, assoc: Association) -> tuple[int, str]:
        """Most bytes the next C-STORE data set of ``assoc`` may hold, and the
        ErrorComment of a refusal beyond it: ``max_store_mb`` for a registered
        peer; for an unknown one ``unknown_store_max_mb`` or what is left of
        its address's quota, if less."""
        settings = self.settings
        caller = self.caller(assoc)
        if caller.peer is not None:
            return settings.max_store_mb * MB, f"data set larger than {settings.max_store_mb} MB"
        remaining = self.quota.remaining(caller.address)
        if remaining < settings.unknown_store_max_mb * MB:
            return remaining, "quota of this unregistered peer used up"
        return settings.unknown_store_max_mb * MB, f"data set larger than {settings.unknown_store_max_mb} MB"

    # -- C-ECHO ------------------------------------------------------------
    def handle_echo(self, event: Event) -> int:
        """C-ECHO (PS3.7 9.1.5): answer success."""
        return Status.SUCCESS

    # -- C-STORE -----------------------------------------------------------
    def handle_store(self, event: Event) -> Dataset | int:
        """C-STORE (PS3.4 B.2.3) through pynetdicom: archive the data set exactly as received."""
        size = _buffer_size(event.request.DataSet)
        limit, refusal = self.store_limit(event.assoc)
        if size > limit:
            LOGGER.warning("refused C-STORE of %d bytes from %s: %s", size, describe_peer(event), refusal)
            return _status(Status.STORE_OUT_OF_RESOURCES, refusal)
        return self.store_received(event.assoc, event.encoded_dataset(), str(event.request.AffectedSOPInstanceUID or ""))

    def attach_store_lane(self, event: Event) -> None:
        """EVT_ESTABLISHED: let an accepted association receive C-STOREs in its
        DUL thread, and bound its PDUs and stalls by what its peer may send."""
        assoc = event.assoc
        dul = assoc.dul
        if not assoc.is_acceptor:
            return
        wrapper = dul.socket
        sock = getattr(wrapper, "socket", None)
        if sock is not None:
            limit = self.settings.max_store_mb * MB
            wrapper.pdu_limit = limit + MB  # no PDU can be larger than the largest data set
            assoc.max_data_set = limit  # checked by protocol.pdata_problem when pynetdicom reads
            protocol.bound_socket(sock, self.settings.network_timeout, self.settings.network_timeout)
        if isinstance(dul, reactor.EventDrivenDUL) and not isinstance(sock, ssl.SSLSocket):  # the lane peeks
            dul.store_lane = StoreLane(dul, self.store_received, self.tap, limit=self.store_limit)

    def _store_allowed(self, assoc: Association) -> bool:
        """Whether the association's peer may store: looked up once per
        association (an association is granted what its peer may do when it
        starts, not at each of its thousands of C-STOREs)."""
        allowed = self._may_store.get(assoc)
        if allowed is None:
            allowed = self._may_store[assoc] = self.allows(assoc, "store")
        return allowed

    def store_received(self, assoc: Association, raw: bytes, affected: str,
                       data_set: tuple[str, int] | None = None) -> Dataset | int:
        """Archive one received instance (Part 10 bytes); the C-STORE status to answer.

        ``data_set``: the data set's transfer syntax and offset in ``raw``,
        from a caller that wrote the file meta (see :func:`~pacsdash.archive.parsing.parse_instance`).
        """
        peer = describe_requestor(assoc)
        if not self._store_allowed(assoc):
            LOGGER.warning("refused C-STORE from %s: peer not allowed to store", peer)
            return _status(OUTCOMES[StoreOutcome.NOT_AUTHORIZED].dimse_status, "this peer may not store here")
        registered = self.caller(assoc).peer
        try:
            # A peer restricted to labels keeps seeing the studies it sends: a study it makes gets its labels.
            result = self.archive.store_bytes(raw, origin=f"dicom:{peer}", data_set=data_set,
                                              labels=registered.labels if registered is not None else ())
        except Exception as exc:  # every failure becomes its status (archive/outcomes.py)
            outcome = classify(exc)
            if outcome is StoreOutcome.CANNOT_UNDERSTAND:
                LOGGER.warning("refused C-STORE from %s: %s", peer, exc)
                return _status(OUTCOMES[outcome].dimse_status, str(exc))
            if outcome is StoreOutcome.OUT_OF_RESOURCES:
                LOGGER.error("C-STORE from %s could not be written: %s", peer, exc)
            else:
                LOGGER.exception("C-STORE from %s could not be stored", peer)
            return _status(OUTCOMES[outcome].dimse_status, OUTCOMES[outcome].text)
        caller = self.caller(assoc)
        if caller.peer is None:
            self.quota.add(caller.address, len(raw) - (data_set[1] if data_set else 0))
        affected = affected.rstrip("\x00 ")
        if affected and affected != result.SOPInstanceUID:
            LOGGER.warning("C-STORE AffectedSOPInstanceUID %s differs from the data set's", affected)
        outcome = classify(outcome=result.outcome)
        if outcome is StoreOutcome.DUPLICATE:
            LOGGER.info("C-STORE of %s from %s: already archived, first copy kept", result.SOPInstanceUID, peer)
        return OUTCOMES[outcome].dimse_status

    # -- C-FIND ------------------------------------------------------------
    def handle_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        """C-FIND (PS3.4 C.4.1): match the identifier, one pending response per match."""
        if not self.allows(event.assoc, "find"):
            LOGGER.warning("refused C-FIND from %s: peer not allowed to find", describe_peer(event))
            self._audit(event, "query", False, ())
            yield _status(Status.NOT_AUTHORIZED, "this peer may not query here"), None
            return
        identifier = event.identifier
        try:
            query = query_from_identifier(identifier)
            _check_model(event, query)
            rows = self.archive_for(event.assoc).find(query)
        except InvalidQuery as exc:
            LOGGER.warning("C-FIND from %s: %s", describe_peer(event), exc)
            yield _status(Status.FIND_IDENTIFIER_MISMATCH, str(exc)), None
            return
        self._audit(event, "query", True, (r["StudyInstanceUID"] for r in rows if r.get("StudyInstanceUID")),
                    _describe_query(query))
        syntax = UID(event.context.transfer_syntax)
        # Pre-encoded identifiers need the change to pynetdicom's encode (:mod:`.identifiers`).
        raw_ok = syntax.is_little_endian and not syntax.is_deflated and compat.installed()
        builder = ResponseBuilder(identifier, query.level, self.settings.aet,
                                  implicit_vr=syntax.is_implicit_VR if raw_ok else None)
        for row in rows:
            if event.is_cancelled:
                yield Status.CANCEL, None
                return
            yield Status.PENDING, builder.build(row)

    # -- retrieve (C-MOVE, C-GET) ------------------------------------------------
    def _matching_instances(self, event: Event) -> list[InstanceLocation]:
        query = query_from_identifier(event.identifier)
        _check_model(event, query)
        keys = {k: v for k, v in query.filters.items() if v}
        if not keys:
            raise InvalidQuery("a retrieve needs at least one key with a value")
        locations = self.archive_for(event.assoc).locate_matching(Query(Level.IMAGE, keys))
        self._audit(event, "retrieve", True, (loc.StudyInstanceUID for loc in locations), _describe_query(query))
        return locations

    def handle_move(self, event: Event) -> Iterator[Any]:
        """C-MOVE (PS3.4 C.4.2): send matches to a registered peer only.

        A refusal before the destination is known (peer not allowed, bad
        identifier) raises, which pynetdicom answers with a failure status
        (C514, unable to process) after logging.
        """
        aet = event.assoc.requestor.ae_title.strip()
        if not self.allows(event.assoc, "move"):
            LOGGER.warning("refused C-MOVE from %s: peer not allowed to move", describe_peer(event))
            self._audit(event, "retrieve", False, ())
            raise PermissionError(f"peer {aet!r} may not C-MOVE")
        destination_aet = str(event.move_destination or "").strip()
        destination = self.policy.destination(destination_aet)
        if destination is None:
            LOGGER.warning("C-MOVE from %s to unknown destination %r", describe_peer(event), destination_aet)
            yield None, None  # pynetdicom answers A801: Move Destination unknown
            return
        try:
            locations = self._matching_instances(event)
        except InvalidQuery as exc:
            LOGGER.warning("C-MOVE from %s: %s", describe_peer(event), exc)
            raise
        yield destination.host, destination.port, {
            "ae_title": destination.aet,
            "contexts": _contexts_for(locations),
            "evt_handlers": NODELAY_HANDLERS,
        }
        yield len(locations)
        LOGGER.info("C-MOVE of %d instances from %s to %s", len(locations), describe_peer(event), destination.name)
        originator = MoveOriginator(aet, int(event.request.MessageID))
        for location in locations:
            if event.is_cancelled:
                yield Status.CANCEL, None
                return
            yield Status.PENDING, self._instance_to_send(event, location, originator)

    def handle_get(self, event: Event) -> Iterator[Any]:
        """C-GET (PS3.4 C.4.3): send matches back over the same association."""
        aet = event.assoc.requestor.ae_title.strip()
        if not self.allows(event.assoc, "get"):
            LOGGER.warning("refused C-GET from %s: peer not allowed to get", describe_peer(event))
            self._audit(event, "retrieve", False, ())
            raise PermissionError(f"peer {aet!r} may not C-GET")
        try:
            locations = self._matching_instances(event)
        except InvalidQuery as exc:
            LOGGER.warning("C-GET from %s: %s", describe_peer(event), exc)
            raise
        yield len(locations)
        accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in event.assoc.accepted_contexts}
        for location in locations:
            if event.is_cancelled:
                yield Status.CANCEL, None
                return
            if (location.SOPClassUID, location.TransferSyntaxUID) in accepted:
                yield Status.PENDING, self._instance_to_send(event, location)
            else:
                # The peer did not accept the stored encoding: let pynetdicom
                # convert between uncompressed syntaxes if it can.
                yield Status.PENDING, self._decoded_instance(event, location)

    def _instance_to_send(self, event: Event, location: InstanceLocation,
                          originator: MoveOriginator | None = None) -> Dataset:
        """What a C-GET/C-MOVE handler yields for one stored instance: a
        :class:`StoredInstance`, sent as stored, or on plain pynetdicom
        (:mod:`pacsdash.dimse.compat`) the decoded data set."""
        if compat.installed():
            return StoredInstance(partial(self.archive.open, location), location, originator)
        return self._decoded_instance(event, location)

    def _decoded_instance(self, event: Event, location: InstanceLocation) -> Dataset:
        """The stored instance decoded by pydicom, for pynetdicom to re-encode;
        if it cannot be read, a stand-in whose sending fails (a failed
        sub-operation naming it, PS3.4 C.4.2.3, C.4.3.3)."""
        try:
            return self.archive.read_dataset(location)
        except (StoredFileError, InvalidDicomError, OSError) as exc:
            LOGGER.warning("%s from %s: %s not sent: %s", _service_name(event), describe_peer(event),
                           location.SOPInstanceUID, exc)
            return StoredInstance(partial(self.archive.open, location), location)


_SERVICES = {evt.EVT_C_FIND: "C-FIND", evt.EVT_C_MOVE: "C-MOVE", evt.EVT_C_GET: "C-GET"}


def _describe_query(query: Query) -> str:
    """The level and keys of a query, for its audit entry (``STUDY PatientID=X``)."""
    keys = " ".join(f"{k}={v}" for k, v in query.filters.items() if v)
    return f"{query.level.value} {keys}".strip()


def _service_name(event: Event) -> str:
    """``C-GET`` or ``C-MOVE``, for log lines."""
    return "C-MOVE" if event.event is evt.EVT_C_MOVE else "C-GET"


def _check_model(event: Event, query: Query) -> None:
    """Patient Root has no IMAGE-less STUDY keys without a patient (PS3.4 C.6.1)."""
    model = str(event.context.abstract_syntax)
    if query.level is Level.PATIENT and model.startswith("1.2.840.10008.5.1.4.1.2.2"):
        raise InvalidQuery("the Study Root model has no PATIENT level (PS3.4 C.6.2)")


def _contexts_for(locations: list[InstanceLocation]) -> list:
    """Presentation contexts to offer a C-MOVE destination: each stored encoding."""
    pairs = sorted({(loc.SOPClassUID, loc.TransferSyntaxUID) for loc in locations})
    contexts = []
    for sop_class, transfer_syntax in pairs:
        contexts.append(build_context(sop_class, [transfer_syntax]))
        if len(contexts) >= 128:
            break
    return contexts


def _buffer_size(buffer: Any) -> int:
    """Bytes held by a C-STORE primitive's data set buffer (a BytesIO), or 0."""
    if buffer is None:
        return 0
    with buffer.getbuffer() as view:
        return view.nbytes


def _status(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = int(status)
    ds.ErrorComment = comment[:64]
    return ds
