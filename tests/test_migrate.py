"""``pacsdash migrate --index URL --storage URL`` (issue 16): an archive moves between
the embedded default (DuckDB + files) and PostgreSQL + an S3 bucket, and back, with
every instance verified by SHA-256, its labels, audit trail and pseudonyms with it;
the config names the destination only once everything is there, and a migration
that stops half-way loses nothing and goes on when run again."""

from __future__ import annotations

import hashlib
import tomllib

import pytest

from pacsdash.access import open_accounts
from pacsdash.archive import Level
from pacsdash.archive.actions import Actor, StudyActions
from pacsdash.archive.factory import open_archive
from pacsdash.config import load_settings
from tests.helpers import SAMPLES, manifest, run_cli

FILES = sorted((SAMPLES / "valid").glob("*.dcm"))[:8]


def _digests(archive) -> dict[str, str]:
    out = {}
    for location in archive.locate(Level.IMAGE):
        with archive.open(location) as stream:
            out[location.SOPInstanceUID] = hashlib.sha256(stream.read()).hexdigest()
    return out


@pytest.fixture
def home(tmp_path):
    """A home of the embedded default with studies, a label, an anonymized copy (a pseudonym, audit entries)."""
    home = tmp_path / "home"
    done = run_cli("import", *map(str, FILES), "--home", str(home))
    assert done.returncode == 0, done.stdout + done.stderr
    added = run_cli("users", "add", "ann", "--role", "editor", "--labels", "trial-7", "--password-stdin",
                    "--home", str(home), input="a-long-password\n")
    assert added.returncode == 0, added.stderr
    settings = load_settings(home)
    with open_archive(settings) as archive:
        study = archive.locate(Level.IMAGE)[0].StudyInstanceUID
        actions = StudyActions(archive, home)
        actions.add_label(study, "trial-7", Actor("ann"))
        actions.anonymize(study, Actor("ann"))
    return home


def _state(settings):
    with open_archive(settings) as archive:
        studies = sorted({loc.StudyInstanceUID for loc in archive.locate(Level.IMAGE)})
        return {
            "digests": _digests(archive),
            "labels": archive.index.labels_of(studies),
            "records": sorted((r.time.timestamp(), r.actor, r.action, tuple(r.studies))
                              for r in archive.records(limit=10_000)),
            "subjects": sorted(archive.index.subjects()),
            "users": [(u.name, u.role.value, u.labels) for u in open_accounts(settings).users()],
        }


def test_an_archive_moves_to_postgresql_and_s3_and_back_whole(home, tmp_path, postgres_server, s3_bucket):
    before = _state(load_settings(home))
    assert before["labels"] and before["subjects"] and len(before["records"]) >= 2
    expected = {row["sop_instance_uid"] for name, row in manifest().items() if SAMPLES / "valid" / name in FILES}
    assert expected <= set(before["digests"])

    database = postgres_server.new_database()
    there = run_cli("migrate", "--index", database, "--storage", s3_bucket.url("unit/archive"),
                    "--endpoint-url", s3_bucket.endpoint_url, "--region", "us-east-1", "--home", str(home))
    assert there.returncode == 0, there.stdout + there.stderr
    config = tomllib.loads((home / "pacsdash.toml").read_text())
    assert config["index"]["url"] == database and "path" not in config["index"]
    assert config["storage"] == {"url": s3_bucket.url("unit/archive"), "endpoint_url": s3_bucket.endpoint_url,
                                 "region": "us-east-1"}
    assert _state(load_settings(home)) == before
    objects = s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name, Prefix="unit/archive/")
    assert objects["KeyCount"] == len(before["digests"])

    back = run_cli("migrate", "--index", f"duckdb:{tmp_path / 'back.duckdb'}", "--storage",
                   f"file:{tmp_path / 'back-store'}", "--home", str(home))
    assert back.returncode == 0, back.stdout + back.stderr
    settings = load_settings(home)
    assert not settings.index.url and not settings.storage.s3
    assert settings.index_path == tmp_path / "back.duckdb" and settings.store_path == tmp_path / "back-store"
    assert _state(settings) == before


def test_an_interrupted_migration_loses_nothing_and_goes_on(home, tmp_path, monkeypatch):
    from pacsdash.archive import Archive, migrate as migration

    before = _state(load_settings(home))
    config = (home / "pacsdash.toml").read_text()
    real, calls = Archive.store_bytes, {"n": 0}

    def failing(self, raw, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("the disk went away")
        return real(self, raw, *args, **kwargs)

    settings = load_settings(home)
    target = migration.target_settings(settings, f"duckdb:{tmp_path / 'to.duckdb'}", f"file:{tmp_path / 'to'}")
    monkeypatch.setattr(Archive, "store_bytes", failing)
    with open_archive(settings) as source, open_archive(target) as destination:
        with pytest.raises(migration.MigrationError, match="the disk went away"):
            migration.migrate(source, destination)
    monkeypatch.setattr(Archive, "store_bytes", real)
    assert (home / "pacsdash.toml").read_text() == config  # still the source
    assert _state(load_settings(home)) == before  # the source untouched
    again = run_cli("migrate", "--index", f"duckdb:{tmp_path / 'to.duckdb'}", "--storage", f"file:{tmp_path / 'to'}",
                    "--home", str(home))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"copied {len(before['digests']) - 3} and verified {len(before['digests'])} instances" in again.stdout
    after = _state(load_settings(home))
    assert after == before  # no instance twice, none missing, records not doubled


def test_a_destination_copy_that_differs_is_named_and_the_config_kept(home, tmp_path):
    """Run again onto a destination holding a different copy of an instance (same size,
    other bytes): the instance is named, nothing is overwritten, the config keeps the source."""
    config = (home / "pacsdash.toml").read_text()
    target = ["--index", f"duckdb:{tmp_path / 'to.duckdb'}", "--storage", f"file:{tmp_path / 'to'}"]
    assert run_cli("migrate", *target, "--home", str(home)).returncode == 0
    with open_archive(load_settings(home)) as archive:  # the destination, now named by the config
        victim = archive.locate(Level.IMAGE)[0]
    (tmp_path / "to" / victim.file).write_bytes(b"\1" * victim.size)
    (home / "pacsdash.toml").write_text(config)  # the source again
    refused = run_cli("migrate", *target, "--home", str(home))
    assert refused.returncode == 1 and victim.SOPInstanceUID in refused.stderr and "differs" in refused.stderr
    assert (home / "pacsdash.toml").read_text() == config
    assert (tmp_path / "to" / victim.file).read_bytes() == b"\1" * victim.size  # not overwritten either


def test_the_destination_must_be_another_place(home):
    settings = load_settings(home)
    same = run_cli("migrate", "--index", f"duckdb:{settings.index_path}", "--storage", "file:elsewhere",
                   "--home", str(home))
    assert same.returncode == 2 and "shares the index or the store" in same.stderr
    bad = run_cli("migrate", "--index", "mysql://x", "--storage", "file:x", "--home", str(home))
    assert bad.returncode == 2 and "--index must be" in bad.stderr
