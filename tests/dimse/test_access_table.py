"""Which DICOM peer may ask which service: the access table of CONTRACT.md as a test (issue 15).

CONTRACT.md ("Home and config", "Users and peers"): a ``[modalities.NAME]``
peer says which of store/find/move/get it may ask of us; a calling AE title
that is not a registered modality is refused find/move/get, and store unless
``[server] accept_unknown_store`` (false for ``serve``). C-ECHO is answered
for anyone. The expected table is data (:data:`PEERS`); each caller asks each
service of a real ``pacsdash serve`` (peers registered with ``pacsdash
modalities add``), with pynetdicom as the SCU, one association per service.

"Refused" is either way a node may say no: the association rejected, or the
service answered with a failure status (0124 Not Authorized and the like).
"Accepted" is a success: the C-STORE stored, the C-FIND found the study, the
C-MOVE and C-GET delivered it.
"""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from tests.factories import PREFIX, make_dataset, make_instance
from tests.helpers import ServerProcess, run_cli

SERVICES = ("echo", "store", "find", "move", "get")
#: Registered peers (all at 127.0.0.1, where the tests call from) and the services their
#: ``--allow`` lists; what each may do is exactly its list, C-ECHO besides.
PEERS: dict[str, tuple[str, ...]] = {
    "STOREONLY": ("store",),
    "FINDONLY": ("find",),
    "MOVEONLY": ("move",),
    "GETONLY": ("get",),
    "STOREFIND": ("store", "find"),
    "EVERYONE": ("store", "find", "move", "get"),
}
#: A calling AE title nobody registered: C-ECHO only, and C-STORE when the config accepts unknown stores.
UNKNOWN = "STRANGER"
#: Where C-MOVEs go: a registered modality with a storage SCP of the test's own.
DESTINATION = "MOVEDEST"
#: A peer allowed every service but restricted to studies labelled trial-7 (``--labels``).
TRIAL_PEER, TRIAL_LABEL = "TRIALPEER", "trial-7"


def allowed(caller: str, accept_unknown_store: bool) -> set[str]:
    """What the contract lets ``caller`` ask (C-ECHO always)."""
    if caller in PEERS:
        return {"echo", *PEERS[caller]}
    return {"echo", "store"} if accept_unknown_store else {"echo"}


def client(aet: str) -> AE:
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


@pytest.fixture(scope="module")
def destination():
    """A storage SCP that counts what C-MOVE brings it."""
    received: list[str] = []

    def on_store(event):
        received.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    ae = AE(ae_title=DESTINATION)
    ae.add_supported_context(CTImageStorage)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield server.server_address[1], received
    server.shutdown()


def make_home(path, destination_port: int) -> tuple[object, dict[str, str]]:
    """A home with the peers of :data:`PEERS` registered and one study imported."""
    home = path / "home"
    for port, (aet, services) in enumerate(PEERS.items(), start=11200):
        done = run_cli("modalities", "add", aet.lower(), "--aet", aet, "--host", "127.0.0.1", "--port", str(port),
                       "--allow", ",".join(services), "--home", str(home))
        assert done.returncode == 0, done.stderr
    done = run_cli("modalities", "add", "trialpeer", "--aet", TRIAL_PEER, "--host", "127.0.0.1", "--port", "11300",
                   "--allow", "store,find,move,get", "--labels", TRIAL_LABEL, "--home", str(home))
    assert done.returncode == 0, done.stderr
    done = run_cli("modalities", "add", "movedest", "--aet", DESTINATION, "--host", "127.0.0.1",
                   "--port", str(destination_port), "--allow", "store", "--home", str(home))
    assert done.returncode == 0, done.stderr
    uids = {"study": generate_uid(PREFIX), "series": generate_uid(PREFIX), "instance": generate_uid(PREFIX)}
    sample = path / "sample.dcm"
    sample.write_bytes(make_instance(StudyInstanceUID=uids["study"], SeriesInstanceUID=uids["series"],
                                     SOPInstanceUID=uids["instance"], PatientID="DIMSEACCESS"))
    done = run_cli("import", str(sample), "--home", str(home))
    assert done.returncode == 0, done.stdout + done.stderr
    return home, uids


@pytest.fixture(scope="module")
def servers(tmp_path_factory, destination):
    """Two servers of the same peers and study: ``serve``'s default (unknown
    stores refused) and ``accept_unknown_store = true`` (the demo's)."""
    started = {}
    try:
        for accept in (False, True):
            home, uids = make_home(tmp_path_factory.mktemp(f"dimse-access-{accept}"), destination[0])
            started[accept] = (ServerProcess.start(home, accept_unknown_store=accept), uids)
        yield started
    finally:
        for server, _ in started.values():
            server.stop()


def study_query(uids: dict[str, str]) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = uids["study"]
    return query


def final_status(responses) -> int | None:
    statuses = [int(status.Status) for status, _ in responses if "Status" in status]
    return statuses[-1] if statuses else None


def ask(server: ServerProcess, caller: str, service: str, uids: dict[str, str], received: list[str]) -> tuple[str, str]:
    """("accepted" | "refused" | "other", what happened) of one service asked by ``caller``."""
    ae = client(caller)
    roles = []
    context = {"echo": Verification, "store": CTImageStorage, "find": StudyRootQueryRetrieveInformationModelFind,
               "move": StudyRootQueryRetrieveInformationModelMove, "get": StudyRootQueryRetrieveInformationModelGet}
    ae.add_requested_context(context[service])
    handlers = []
    got: list[str] = []
    if service == "get":
        ae.add_requested_context(CTImageStorage)
        roles.append(build_role(CTImageStorage, scp_role=True))

        def on_store(event):
            got.append(event.request.AffectedSOPInstanceUID)
            return 0x0000

        handlers.append((evt.EVT_C_STORE, on_store))
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.aet, ext_neg=roles, evt_handlers=handlers)
    if not assoc.is_established:
        return "refused", "association rejected" if assoc.is_rejected else "association aborted"
    try:
        if service == "echo":
            status = int(assoc.send_c_echo().Status)
            return ("accepted" if status == 0 else "refused"), f"status {status:04X}"
        if service == "store":
            status = assoc.send_c_store(make_dataset(PatientID="DIMSEACCESSSTORE"))
            code = int(status.Status) if "Status" in status else None
            return ("accepted" if code == 0 else "refused" if code is not None else "other"), f"status {code}"
        if service == "find":
            responses = list(assoc.send_c_find(study_query(uids), StudyRootQueryRetrieveInformationModelFind))
            pending = sum(1 for status, _ in responses if "Status" in status and int(status.Status) in (0xFF00, 0xFF01))
            code = final_status(responses)
            outcome = "accepted" if code == 0 and pending == 1 else "refused" if code not in (0, None) else "other"
            return outcome, f"final status {code}, {pending} match(es)"
        if service == "move":
            before = received.count(uids["instance"])
            responses = list(assoc.send_c_move(study_query(uids), DESTINATION, StudyRootQueryRetrieveInformationModelMove))
            code = final_status(responses)
            moved = received.count(uids["instance"]) - before
            outcome = "accepted" if code == 0 and moved == 1 else "refused" if code not in (0, None) and not moved else "other"
            return outcome, f"final status {code}, {moved} delivered"
        responses = list(assoc.send_c_get(study_query(uids), StudyRootQueryRetrieveInformationModelGet))
        code = final_status(responses)
        outcome = "accepted" if code == 0 and got == [uids["instance"]] else "refused" if code not in (0, None) and not got else "other"
        return outcome, f"final status {code}, {len(got)} delivered"
    finally:
        assoc.release()


def test_the_table_names_every_service_of_the_contract():
    assert set(SERVICES) == {"echo", "store", "find", "move", "get"}
    assert all(set(services) <= set(SERVICES) - {"echo"} for services in PEERS.values())
    every = set().union(*PEERS.values())
    assert every == {"store", "find", "move", "get"}, "each service has a peer that may ask it"


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("caller", [*PEERS, UNKNOWN])
def test_a_registered_peer_may_ask_what_its_allow_list_says(servers, destination, caller, service):
    """``serve``'s default config: unknown peers may not store."""
    server, uids = servers[False]
    outcome, what = ask(server, caller, service, uids, destination[1])
    want = "accepted" if service in allowed(caller, accept_unknown_store=False) else "refused"
    assert outcome == want, f"{service} by {caller}: expected {want}, got {what}"


@pytest.mark.parametrize("service", SERVICES)
def test_an_unknown_caller_may_echo_and_store_when_unknown_stores_are_accepted(servers, destination, service):
    server, uids = servers[True]
    outcome, what = ask(server, UNKNOWN, service, uids, destination[1])
    want = "accepted" if service in allowed(UNKNOWN, accept_unknown_store=True) else "refused"
    assert outcome == want, f"{service} by {UNKNOWN} (accept_unknown_store = true): expected {want}, got {what}"


@pytest.mark.parametrize("service", ("store", "find", "move", "get"))
def test_accepting_unknown_stores_changes_nothing_for_registered_peers(servers, destination, service):
    """The same peers on the demo's config: each still gets exactly its list."""
    server, uids = servers[True]
    for caller in PEERS:
        outcome, what = ask(server, caller, service, uids, destination[1])
        want = "accepted" if service in allowed(caller, accept_unknown_store=True) else "refused"
        assert outcome == want, f"{service} by {caller} (accept_unknown_store = true): expected {want}, got {what}"


def test_a_peer_restricted_to_labels_finds_and_retrieves_only_studies_with_them(servers, destination):
    """Role x service x label for DIMSE: the imported study has no label, so the trial-7 peer's
    C-FIND matches nothing and its C-MOVE and C-GET deliver nothing (successes with no
    match, as for a study nobody stored); once the study is labelled it gets all three.
    What the peer stores itself it keeps finding. Each query and retrieval is in the audit trail."""
    server, uids = servers[False]
    hidden = {service: ask(server, TRIAL_PEER, service, uids, destination[1]) for service in ("find", "move", "get")}
    assert hidden == {"find": ("other", "final status 0, 0 match(es)"), "move": ("other", "final status 0, 0 delivered"),
                      "get": ("other", "final status 0, 0 delivered")}, hidden
    done = run_cli("labels", "add", uids["study"], TRIAL_LABEL, "--home", str(server.home))
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        for service in ("find", "move", "get"):
            outcome, what = ask(server, TRIAL_PEER, service, uids, destination[1])
            assert outcome == "accepted", f"{service} by {TRIAL_PEER} of a trial-7 study: {what}"
        assert ask(server, "EVERYONE", "find", uids, destination[1])[0] == "accepted"  # unrestricted peers still see it
    finally:
        assert run_cli("labels", "remove", uids["study"], TRIAL_LABEL, "--home", str(server.home)).returncode == 0
    sent = {"study": generate_uid(PREFIX), "series": generate_uid(PREFIX), "instance": generate_uid(PREFIX)}
    ae = client(TRIAL_PEER)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.aet)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(make_dataset(StudyInstanceUID=sent["study"], SeriesInstanceUID=sent["series"],
                                                 SOPInstanceUID=sent["instance"], PatientID="TRIALSENT"))
        assert int(status.Status) == 0
    finally:
        assoc.release()
    assert ask(server, TRIAL_PEER, "find", sent, destination[1])[0] == "accepted"
    trail = run_cli("audit", "--user", TRIAL_PEER, "--csv", "--home", str(server.home))
    assert trail.returncode == 0, trail.stderr
    rows = [line.split(",") for line in trail.stdout.splitlines()[1:]]
    actions = {(row[3], row[4]) for row in rows}
    assert {("query", "success"), ("retrieve", "success")} <= actions, trail.stdout
    assert any(uids["study"] in line for line in trail.stdout.splitlines() if ",retrieve," in line), trail.stdout
