"""pacsdash changes pynetdicom only through :mod:`pacsdash.dimse.compat`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pynetdicom
import pytest

from pacsdash.dimse import compat


def test_the_pin_is_the_installed_pynetdicom() -> None:
    assert pynetdicom.__version__ == compat.PYNETDICOM_VERSION, (
        f"pynetdicom {pynetdicom.__version__} is installed; pacsdash's changes mirror {compat.PYNETDICOM_VERSION} "
        "and are not applied to another version: re-check the functions in compat.MIRRORED, then update the pin")


@pytest.mark.parametrize("entry", compat.MIRRORED, ids=lambda e: f"{e.module}.{e.qualname}")
def test_mirrored_upstream_function_is_unchanged(entry: compat.Mirrored) -> None:
    try:
        digest = compat.upstream_digest(entry.module, entry.qualname)
    except LookupError:
        pytest.fail(f"{entry.module}.{entry.qualname} no longer exists; re-check {entry.by}")
    assert digest == entry.sha256, (
        f"{entry.module}.{entry.qualname} changed since pynetdicom {compat.PYNETDICOM_VERSION}: re-check "
        f"{entry.by} against it, then update its sha256 in compat.MIRRORED and PYNETDICOM_VERSION")


def test_upstream_source_is_read_even_when_patched() -> None:
    """The digests are of pynetdicom's own code, never of pacsdash's replacement."""
    before = compat.upstream_digest("pynetdicom.dimse", "DIMSEServiceProvider.send_msg")
    compat.install()
    assert compat.upstream_digest("pynetdicom.dimse", "DIMSEServiceProvider.send_msg") == before


_SNAPSHOT = textwrap.dedent("""
    import pynetdicom.ae, pynetdicom.association, pynetdicom.dimse, pynetdicom.fsm
    import pynetdicom.presentation, pynetdicom.service_class, pynetdicom.transport
    from pynetdicom import _config

    BASE = pynetdicom.association.Association  # before any change

    def snapshot():
        return {
            "DUL": pynetdicom.association.DULServiceProvider,
            "Association": pynetdicom.association.Association,
            "ae.Association": pynetdicom.ae.Association,
            "send_c_store": BASE.__dict__["send_c_store"],
            "recv": pynetdicom.transport.AssociationSocket.recv,
            "send_msg": pynetdicom.dimse.DIMSEServiceProvider.send_msg,
            "receive_primitive": pynetdicom.dimse.DIMSEServiceProvider.receive_primitive,
            "actions": dict(pynetdicom.fsm.ACTIONS),
            "encode": pynetdicom.service_class.encode,
            "deepcopy": pynetdicom.presentation.PresentationContext.__dict__.get("__deepcopy__"),
            "config": {k: v for k, v in vars(_config).items() if k.isupper()},
        }
    """)


def test_importing_pacsdash_changes_nothing_in_pynetdicom() -> None:
    script = _SNAPSHOT + textwrap.dedent("""
        before = snapshot()
        import pacsdash.dimse.scp, pacsdash.dimse.scu, pacsdash.dimse.workers, pacsdash.dimse.storelane
        import pacsdash.server, pacsdash.cli
        after = snapshot()
        changed = sorted(k for k in before if before[k] != after[k])
        assert not changed, changed

        from pacsdash.dimse import compat
        assert compat.install() and compat.install()  # idempotent
        installed = snapshot()
        assert all(installed[k] != before[k] for k in before), [k for k in before if installed[k] == before[k]]
        compat.uninstall()
        restored = snapshot()
        assert restored == before, sorted(k for k in before if restored[k] != before[k])

        assert compat.install(plain=True) is False
        plain = snapshot()
        assert {k for k in before if plain[k] != before[k]} == {"config"}
        assert compat.ensure() is False  # the SCU keeps the process's choice
        assert compat.install() is True
        assert compat.install(plain=True) is False and snapshot() == plain
        print("ok")
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr


def test_another_pynetdicom_version_runs_plain_with_a_warning() -> None:
    script = _SNAPSHOT + textwrap.dedent("""
        import logging
        logging.basicConfig(level=logging.WARNING)
        before = snapshot()
        pynetdicom.__version__ = "9.9.9"
        from pacsdash.dimse import compat
        assert compat.install() is False and not compat.installed()
        after = snapshot()
        assert {k for k in before if after[k] != before[k]} == {"config"}
        print("ok")
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr
    assert "pynetdicom 9.9.9 is running" in result.stderr and compat.PYNETDICOM_VERSION in result.stderr


def test_install_is_thread_safe() -> None:
    import threading

    compat.uninstall()
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(compat.install())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8
    import pynetdicom.fsm

    action = pynetdicom.fsm.ACTIONS["DT-1"][1]
    assert not hasattr(action.__wrapped__, "__wrapped__"), "DT-1 wrapped twice"
