"""Conditions on attributes kept only in the instances' JSON (any tag, PS3.18
10.6.1.2; matching PS3.4 C.2.2.2 plus pacsdash's numeric comparisons), at
the series, study and patient levels: matched through the ``series_values``
table, they find exactly what a brute-force evaluation over the pydicom data
sets finds, and that table stays equal to a recount from the instances."""

from __future__ import annotations

import duckdb
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pacsdash.archive import Archive, Level, Query
from pacsdash.archive.summaries import VALUES_TABLE, refresh_values
from pacsdash.client.conditions import Condition, matches
from pydicom.datadict import dictionary_VR, tag_for_keyword
from tests.factories import PREFIX, make_dataset, make_instance
from tests.pg import archive_home, index_cursor
from tests.pg import rows as index_rows

THICKNESS = ("0.625", "1", "1.25", "2.5", "5")
KERNELS = ("B30f", "B45f", "B70f")
#: Conditions (keyword -> value) checked at every level.
CONDITIONS = [
    {"SliceThickness": "<=1"},
    {"SliceThickness": ">1.5", "ConvolutionKernel": "B30f"},
    {"Modality": "CT", "SliceThickness": "<=1", "ConvolutionKernel": "B30f"},
    {"ConvolutionKernel": "B7*"},
    {"ConvolutionKernel": "b30f"},
    {"ScanOptions": "AXIAL"},
    {"ScanOptions": "HELICAL\\NONE"},
    {"SliceLocation": "<-10"},
    {"SliceLocation": ">=-2", "KVP": "!=120"},
    {"MagneticFieldStrength": ">=3"},
    {"KVP": ">100", "ReconstructionDiameter": "<400"},
    {"InstitutionalDepartmentName": "Rad*"},
    {"SliceThickness": "<0"},
]
LEVELS = (Level.SERIES, Level.STUDY, Level.PATIENT)


def _datasets() -> list[Dataset]:
    """3 patients, 6 studies, 18 series of 1 to 4 instances whose other attributes vary
    between series and, for some, between instances (SliceLocation, KVP, a kernel)."""
    out = []
    for st in range(6):
        study, patient = generate_uid(PREFIX), f"SV{st % 3}"
        for n in range(3):
            s = st * 3 + n
            series, mr = generate_uid(PREFIX), s % 5 == 3
            for k in range(1 + s % 4):
                attrs = dict(PatientID=patient, StudyInstanceUID=study, SeriesInstanceUID=series,
                             Modality="MR" if mr else "CT", SliceThickness=THICKNESS[(s + (k if s % 6 == 1 else 0)) % 5],
                             SliceLocation=f"{-5.0 * k - s:.1f}", InstanceNumber=k + 1)
                if mr:
                    attrs.update(MagneticFieldStrength=("1.5", "3")[s % 2], SOPClassUID="1.2.840.10008.5.1.4.1.1.4")
                else:
                    attrs.update(ConvolutionKernel=KERNELS[(s + (k if s % 4 == 2 else 0)) % 3],
                                 KVP=("100", "120", "140")[(s + k) % 3],
                                 ScanOptions=["HELICAL", "AXIAL"] if s % 3 == 0 else "HELICAL")
                    if k % 2 == 0:
                        attrs["ReconstructionDiameter"] = ("350", "500")[s % 2]
                if s % 2:
                    attrs["InstitutionalDepartmentName"] = "Radiology"
                out.append(make_dataset(**attrs))
    return out


def _raw(ds: Dataset) -> bytes:
    import io

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _meets(instances: list[Dataset], conditions: dict[str, str]) -> bool:
    """Brute force: every condition is met by some instance of the entity (each its own instance)."""
    def met(keyword: str, value: str) -> bool:
        condition = Condition(keyword, value, dictionary_VR(tag_for_keyword(keyword)))
        return any(keyword in ds and matches(condition, ds[keyword].value) for ds in instances)

    return all(met(k, v) for k, v in conditions.items())


def _expected(datasets: list[Dataset], level: Level, conditions: dict[str, str]) -> set[str]:
    key = level.unique_key
    groups: dict[str, list[Dataset]] = {}
    for ds in datasets:
        groups.setdefault(str(getattr(ds, key)), []).append(ds)
    return {uid for uid, members in groups.items() if _meets(members, conditions)}


@pytest.fixture(scope="module")
def filled(tmp_path_factory, index_backend, request):
    from pacsdash.archive.archive import store_many

    folder = tmp_path_factory.mktemp("series_values")
    datasets = _datasets()
    paths = []
    for number, ds in enumerate(datasets):
        path = folder / f"{number}.dcm"
        path.write_bytes(_raw(ds))
        paths.append(path)
    home = archive_home(index_backend, folder, request)
    with home.open() as archive:  # half, in batches
        results = list(store_many(archive, paths[::2], workers=3))
        assert all(not isinstance(result, Exception) for _, result in results)
    # The rest after a restart: series indexed before get more instances.
    archive = home.open()
    for path in paths[1::2]:
        archive.store_file(path)
    yield archive, datasets
    archive.close()


def _found(archive: Archive, level: Level, conditions: dict[str, str], **paging) -> list[dict]:
    return archive.find(Query(level, dict(conditions), list(conditions), **paging))


@pytest.mark.parametrize("level", LEVELS, ids=lambda level: level.value)
@pytest.mark.parametrize("conditions", CONDITIONS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_matches_equal_a_brute_force_evaluation(filled, level, conditions):
    archive, datasets = filled
    expected = _expected(datasets, level, conditions)
    rows = _found(archive, level, conditions)
    assert {r[level.unique_key] for r in rows} == expected
    assert len(rows) == len(expected)
    assert archive.index.count(Query(level, dict(conditions))) == len(expected)


def test_the_fixture_is_not_trivial(filled):
    _, datasets = filled
    sizes = [len(_expected(datasets, Level.SERIES, c)) for c in CONDITIONS]
    assert 0 in sizes and all(0 < n < 18 for n in sizes if n)  # most conditions split the series


@pytest.mark.parametrize("level", LEVELS, ids=lambda level: level.value)
def test_pages_cover_the_matches_once(filled, level):
    archive, datasets = filled
    conditions = {"SliceThickness": ">=1"}
    paged = []
    for offset in range(0, 20, 3):
        paged += [r[level.unique_key] for r in _found(archive, level, conditions, limit=3, offset=offset)]
    assert sorted(paged) == sorted(_expected(datasets, level, conditions))


def test_a_series_returns_its_first_instance_value(filled):
    """The returned value of an attribute that varies in a series is the first indexed instance's."""
    archive, datasets = filled
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
    first: dict[str, Dataset] = {}
    for (uid,) in index_rows(archive, 'SELECT "SOPInstanceUID" FROM instances ORDER BY rowid'):  # the order indexed
        first.setdefault(str(by_uid[uid].SeriesInstanceUID), by_uid[uid])
    rows = archive.find(Query(Level.SERIES, {"PatientID": "SV*"}, ["SliceLocation", "ConvolutionKernel",
                                                                    "MagneticFieldStrength"]))
    assert len(rows) == 18
    for row in rows:
        ds = first[row["SeriesInstanceUID"]]
        assert row["SliceLocation"] == str(ds.SliceLocation)
        assert row["ConvolutionKernel"] == ds.get("ConvolutionKernel")
        assert row["MagneticFieldStrength"] == (str(ds.MagneticFieldStrength) if "MagneticFieldStrength" in ds
                                                else None)


def _table(cursor: duckdb.DuckDBPyConnection, dialect: str = "duckdb") -> list[tuple]:
    """Rows of the values table: per series and tag, its values in the order stored."""
    if dialect == "postgresql":
        return [tuple(r) for r in cursor.execute(
            f'SELECT "StudyInstanceUID", "SeriesInstanceUID", tag, array_agg(value ORDER BY rowid) FROM {VALUES_TABLE} '
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ).fetchall()]
    return cursor.execute(
        f'SELECT "StudyInstanceUID", "SeriesInstanceUID", tag, list(value ORDER BY rowid) FROM {VALUES_TABLE} '
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall()


def test_ingest_keeps_the_table_equal_to_a_recount(filled):
    archive, datasets = filled
    dialect = archive.index.dialect
    with index_cursor(archive, commit=False) as cursor:  # compare with a recount in place, then roll it back
        kept = _table(cursor, dialect.name)
        total = cursor.execute(f"SELECT count(*) FROM {VALUES_TABLE}").fetchone()[0]
        refresh_values(cursor, None, dialect)
        assert _table(cursor, dialect.name) == kept
        assert cursor.execute(f"SELECT count(*) FROM {VALUES_TABLE}").fetchone()[0] == total  # no duplicates
    distinct = {(str(ds.SeriesInstanceUID), str(ds.SliceLocation)) for ds in datasets}
    assert sum(len(values) for _, _, tag, values in kept if tag == "00201041") == len(distinct)


def _cohort(archive: Archive) -> set[str]:
    rows = archive.find(Query(Level.SERIES, {"SliceThickness": "<=1", "ConvolutionKernel": "B*"}))
    return {r["SeriesInstanceUID"] for r in rows}


def test_removals_and_a_new_ingest_follow(home):
    archive = home.open()
    try:
        thin = archive.store_bytes(make_instance(SliceThickness="1", ConvolutionKernel="B30f"))
        study, series = thin.StudyInstanceUID, thin.SeriesInstanceUID
        thick = archive.store_bytes(make_instance(StudyInstanceUID=study, SliceThickness="5", ConvolutionKernel="B30f"))
        assert _cohort(archive) == {series}
        [location] = archive.locate(Level.SERIES, series)
        raw = archive.store.read(location.file)
        archive.store.delete(location.file)
        archive.reconcile(full=True)  # the instance's row goes, and its series' values
        assert _cohort(archive) == set()
        assert archive.find(Query(Level.SERIES, {"SliceThickness": "1"})) == []
        archive.store_bytes(raw)  # back: the writer must not remember the series as already known
        assert _cohort(archive) == {series}
        archive.delete_study(study)
        assert index_rows(archive, f"SELECT count(*) FROM {VALUES_TABLE}")[0][0] == 0
        archive.store_bytes(raw)
        assert _cohort(archive) == {series}
        assert thick.SeriesInstanceUID not in _cohort(archive)
    finally:
        archive.close()


def test_an_index_without_the_table_gets_it_filled(tmp_path):  # DuckDB's migration
    """A home written before the values table opens with it filled from the instances' JSON."""
    store, index = tmp_path / "store", tmp_path / "index.duckdb"
    with Archive.open_home(store, index) as archive:
        for thickness in ("0.625", "1", "5"):
            archive.store_bytes(make_instance(SliceThickness=thickness, ConvolutionKernel="B45f"))
        before = _cohort(archive)
        table = _table(archive.index._cursor())  # noqa: SLF001
    assert len(before) == 2
    con = duckdb.connect(str(index))
    con.execute(f"DROP TABLE {VALUES_TABLE}")
    con.close()
    with Archive.open_home(store, index) as archive:
        assert _table(archive.index._cursor()) == table  # noqa: SLF001
        assert _cohort(archive) == before


def test_a_writer_that_forgets_series_adds_no_duplicates(home):
    """With room for few pairs the writer forgets series and reads them back: the table still equals a recount."""
    from pacsdash.archive.summaries import SeriesValues

    archive = home.open()
    try:
        index = archive.index._index  # noqa: SLF001 - the index behind the read-after-write wrapper
        index._values = SeriesValues(max_pairs=12, dialect=index.dialect)  # noqa: SLF001 - a tiny memory
        study = generate_uid(PREFIX)
        series = [generate_uid(PREFIX) for _ in range(3)]
        for k in range(12):
            archive.store_bytes(make_instance(StudyInstanceUID=study, SeriesInstanceUID=series[k % 3],
                                              SliceLocation=str(k // 2), ConvolutionKernel="B30f"))
            archive.wait_indexed()  # one commit each: the writer forgets and reads back series between them
        remembered = index._values._seen  # noqa: SLF001
        assert 0 < len(remembered) < 3 and sum(map(len, remembered.values())) <= 12
        with index_cursor(archive, commit=False) as cursor:
            kept = _table(cursor, index.dialect.name)
            total = cursor.execute(f"SELECT count(*) FROM {VALUES_TABLE}").fetchone()[0]
            refresh_values(cursor, None, index.dialect)
            assert _table(cursor, index.dialect.name) == kept
            assert cursor.execute(f"SELECT count(*) FROM {VALUES_TABLE}").fetchone()[0] == total
        assert archive.index.count(Query(Level.SERIES, {"SliceLocation": ">=5"})) == 2  # 5 is in series 1 and 2
    finally:
        archive.close()


def test_a_migration_stopped_half_way_is_done_again(tmp_path, monkeypatch):
    """Filling the table is one transaction: a stop half-way leaves no partly filled table behind."""
    from pacsdash.archive import summaries
    from pacsdash.archive.index import DuckDBIndex

    store, index = tmp_path / "store", tmp_path / "index.duckdb"
    with Archive.open_home(store, index) as archive:
        for thickness in ("0.625", "1", "5"):
            archive.store_bytes(make_instance(SliceThickness=thickness, ConvolutionKernel="B30f"))
        before = _cohort(archive)
    con = duckdb.connect(str(index))
    con.execute(f"DROP TABLE {VALUES_TABLE}")
    con.close()
    monkeypatch.setattr(summaries, "_FILL_CHUNK", 1)  # one series per statement
    real = summaries._FILL  # noqa: SLF001
    calls = []

    def stop_after_one(cur, template, *args):
        if template == real:
            calls.append(1)
            if len(calls) > 1:
                raise KeyboardInterrupt
        return cur.execute(template, *args)

    class Stopping:
        def __init__(self, cur):
            self.cur = cur

        def execute(self, sql, *args):
            return stop_after_one(self.cur, sql, *args)

    original = summaries.refresh_values
    monkeypatch.setattr(summaries, "refresh_values", lambda cur, series: original(Stopping(cur), series))
    with pytest.raises(KeyboardInterrupt):
        DuckDBIndex(index)
    assert calls == [1, 1]
    monkeypatch.setattr(summaries, "refresh_values", original)
    with Archive.open_home(store, index) as archive:
        assert _cohort(archive) == before and len(before) == 2
