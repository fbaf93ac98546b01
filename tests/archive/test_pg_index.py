"""What only the PostgreSQL index has: schema versions and migrations (applied
by every opener, once, even when several start at once), the URL rules, the
placeholder translation, and the indexes the searches use."""

from __future__ import annotations

import threading

import psycopg
import pytest

from pacsdash.archive import Level, Query
from pacsdash.archive.pg_index import MIGRATIONS, PostgresIndex, check_url, pyformat
from pacsdash.archive.summaries import SUMMARY_COLUMNS
from pacsdash.config import ConfigError, load_settings
from tests.factories import make_instance
from tests.pg import ArchiveHome


@pytest.fixture
def url(postgres_server) -> str:
    return postgres_server.new_database()


def _versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()]


def test_migrations_are_applied_once_by_whoever_opens_first(url):
    PostgresIndex(url).close()
    PostgresIndex(url).close()  # the second opener finds nothing to do
    assert _versions(url) == list(range(1, len(MIGRATIONS) + 1))


def test_openers_starting_at_once_migrate_once(url):
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        try:
            start.wait()
            PostgresIndex(url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _versions(url) == list(range(1, len(MIGRATIONS) + 1))


def test_a_newer_schema_is_refused(url):
    PostgresIndex(url).close()
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO schema_version (version, description) VALUES (%s, 'from the future')",
                     [len(MIGRATIONS) + 1])
    with pytest.raises(RuntimeError, match="newer than this pacsdash knows"):
        PostgresIndex(url)


def test_summary_columns_added_later_are_filled(url, tmp_path):
    """An index made before an attribute column existed gets it, the summaries recounted."""
    home = ArchiveHome("postgresql", tmp_path, url)
    with home.open() as archive:
        study = archive.store_bytes(make_instance(Modality="CT")).StudyInstanceUID
        archive.store_bytes(make_instance(Modality="MR", StudyInstanceUID=study))
    with psycopg.connect(url) as conn:
        for level, columns in SUMMARY_COLUMNS.items():
            for name in columns:
                conn.execute(f'ALTER TABLE {level.table} DROP COLUMN "{name}"')
    with home.open() as archive:
        [row] = archive.find(Query(Level.STUDY, {"StudyInstanceUID": study}))
        assert row["ModalitiesInStudy"] == "CT\\MR" and row["NumberOfStudyRelatedInstances"] == "2"


def test_two_indexes_on_one_database_add_up(url, tmp_path):
    """Two writers (two servers, later) adding to one study: every count and modality kept."""
    first, second = PostgresIndex(url), PostgresIndex(url)
    try:
        from pacsdash.archive.parsing import parse_instance

        study = "1.2.826.0.1.3680043.8.498.77"
        records = [parse_instance(make_instance(StudyInstanceUID=study, Modality=("CT", "MR")[n % 2]))
                   for n in range(20)]
        for record in records:
            record.file = f"f/{record.SOPInstanceUID}"
        done = []

        def add(index, batch) -> None:
            done.append(index.add(batch))

        threads = [threading.Thread(target=add, args=(first, records[:10])),
                   threading.Thread(target=add, args=(second, records[5:]))]  # 5 in both
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(sum(flags) for flags in done) == 20  # each instance added once
        [row] = first.find(Query(Level.STUDY, {"StudyInstanceUID": study}))
        assert row["NumberOfStudyRelatedInstances"] == "20"
        assert row["NumberOfStudyRelatedSeries"] == "20"
        assert row["ModalitiesInStudy"] == "CT\\MR"
    finally:
        first.close()
        second.close()


def test_name_and_date_searches_use_indexes(url, tmp_path):
    """The plans of the usual searches read indexes, not the whole table (seq scans off, as at
    millions of rows the planner would choose)."""
    home = ArchiveHome("postgresql", tmp_path, url)
    with home.open() as archive:
        archive.store_bytes(make_instance(PatientName="Doe^Jane", PatientID="P1"))
        index = archive.index._index  # noqa: SLF001
        from pacsdash.archive.query import POSTGRESQL, compile_query

        def plan(query: Query) -> str:
            compiled = compile_query(query, dialect=POSTGRESQL)
            with index._pool.connection() as conn, conn.transaction(force_rollback=True):  # noqa: SLF001
                conn.execute("SET LOCAL enable_seqscan = off")
                return "\n".join(r[0] for r in conn.execute("EXPLAIN " + pyformat(compiled.sql), compiled.params))

        assert "studies_name" in plan(Query(Level.STUDY, {"PatientName": "doe*"}))
        assert "studies_patient" in plan(Query(Level.STUDY, {"PatientID": "P1"}))
        assert "studies_date" in plan(Query(Level.STUDY, {"StudyDate": "20240101-20240301"}))
        assert "studies_date" in plan(Query(Level.STUDY, limit=50,
                                            order_by=[("StudyDate", True), ("StudyTime", True)]))


@pytest.mark.parametrize("bad, message", [
    ("postgresql://user:secret@db/pacs", "password"),
    ("mysql://db/pacs", "not a postgresql"),
    ("postgresql://db", "names no database"),
])
def test_urls_without_a_password_only(bad, message):
    with pytest.raises(ValueError, match=message):
        check_url(bad)
    assert check_url("postgresql://pacs@db.example:5433/pacs")


@pytest.mark.parametrize("bad, message", [
    ("postgresql://user:secret@db/pacs", "PGPASSWORD"),
    ("sqlite:///x", "must be postgresql://"),
])
def test_the_config_refuses_a_password_or_another_database(tmp_path, bad, message):
    (tmp_path / "pacsdash.toml").write_text(f'[index]\nurl = "{bad}"\n')
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(tmp_path)
    assert "secret" not in str(raised.value)
    (tmp_path / "pacsdash.toml").write_text('[index]\nurl = "postgresql://pacs@127.0.0.1:5432/pacs"\n')
    assert load_settings(tmp_path).index.url == "postgresql://pacs@127.0.0.1:5432/pacs"


def test_placeholders_become_psycopg_ones_outside_quotes():
    assert pyformat("SELECT '?', \"a?\", x LIKE ? ESCAPE '\\' AND y = '100%'") == \
        "SELECT '?', \"a?\", x LIKE %s ESCAPE '\\' AND y = '100%%'"
