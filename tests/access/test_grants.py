"""One decision of who may do what, for every door (issue 15, Structure): a user's grant
is their role's actions on their labels' studies, a peer's is its allow list on its labels'."""

from __future__ import annotations

import pytest

from pacsdash.access import Action, Role
from pacsdash.access.grants import SERVICE_ACTIONS, for_peer, for_role
from pacsdash.archive import Scope
from pacsdash.config import ModalitySettings


@pytest.mark.parametrize("role", list(Role))
def test_a_users_grant_is_exactly_their_roles_actions(role):
    grant = for_role("ann", role)
    assert {a for a in Action if grant.may(a)} == {a for a in Action if role.may(a)}
    assert grant.scope is None and grant.kind == "user" and grant.name == "ann"


def test_labels_make_the_scope():
    assert for_role("ann", Role.VIEWER, ["trial-7", "teaching"]).scope == Scope(frozenset({"trial-7", "teaching"}))
    assert for_role("ann", Role.VIEWER, []).scope is None


def test_a_registered_peer_may_ask_its_allow_list_and_sees_its_labels():
    peer = ModalitySettings("ct", "CT1", "127.0.0.1", 104, allow=("store", "find"), labels=("trial-7",))
    grant = for_peer("CT1", peer, accept_unknown_store=False)
    assert [s for s in SERVICE_ACTIONS if grant.may_service(s)] == ["store", "find"]
    assert grant.scope == Scope.of(["trial-7"]) and grant.kind == "peer"
    everything = for_peer("WS", ModalitySettings("ws", "WS", "127.0.0.1", 104), accept_unknown_store=False)
    assert all(everything.may_service(s) for s in SERVICE_ACTIONS) and everything.scope is None


@pytest.mark.parametrize("accept", [False, True])
def test_an_unregistered_caller_may_store_only_if_the_config_says_and_sees_nothing(accept):
    grant = for_peer("STRANGER", None, accept_unknown_store=accept)
    assert grant.may_service("store") is accept
    assert not any(grant.may_service(s) for s in ("find", "move", "get"))
    assert grant.scope == Scope(frozenset())
