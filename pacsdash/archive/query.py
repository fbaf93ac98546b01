"""One query type and one implementation of DICOM matching.

Every door (C-FIND, QIDO-RS, the JSON API, the dashboard) parses its request
into a :class:`Query`; :func:`compile_query` turns it into parameterised SQL.
Matching follows PS3.4 C.2.2.2:

- universal matching (C.2.2.2.3): an empty value, or ``*`` alone, matches all;
- single value matching (C.2.2.2.1): exact, except that PN values match
  regardless of case, accents and of ``^`` versus a space (as people type
  names);
- wildcard matching (C.2.2.2.4): ``*`` any run of characters, ``?`` one;
- range matching (C.2.2.2.5): ``lo-hi``, ``lo-`` and ``-hi`` for DA, TM, DT;
- list of UID matching (C.2.2.2.2): ``uid1\\uid2`` for UI; code strings (CS)
  take a list the same way (``ModalitiesInStudy=CT\\MR``);
- a multi-valued stored attribute (CS such as ImageType) matches when any of
  its values matches;
- a pacsdash extension for numbers (IS, DS and the binary VRs), which DICOM
  matches by single value only: ``<=1``, ``<1``, ``>=1.5``, ``>1.5`` and
  ``!=0`` compare numerically (so a notebook can ask for every series with
  SliceThickness <= 1); such a value can never be a stored number, so no
  standard query changes meaning. A single number matches by value too:
  ``KVP=120`` finds a stored ``120.0``.

An attribute that is no column (any other non-bulk tag, kept in each
instance's attribute JSON) is matched, above the IMAGE level, on the distinct
values each series' instances hold of it (:data:`summaries.VALUES_TABLE`): an
entity matches when any of its instances does, as it would over the JSON, on
a few rows per series instead of every instance's JSON; the value returned is
the first indexed.

A query carries the scope of whoever asks (:class:`Scope`): a user or peer
restricted to study labels sees only the studies holding one of them, at
every level, in every count and in every value taken from rows below a
patient. The compiler applies it; no door filters results itself.

Values never reach SQL text: they are bound parameters. Only column names
from the fixed table in :mod:`pacsdash.archive.attributes` and tag numbers
formatted by this module are written into the SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pacsdash.archive.attributes import (
    BY_KEYWORD,
    PATIENT_DERIVED,
    TABLE_ATTRIBUTES,
    Attribute,
    Level,
    attribute_for,
)
from pacsdash.archive.summaries import VALUES_TABLE

#: Row key of an instance's other attributes (see :attr:`Query.other_attributes`);
#: lower case, so never a DICOM keyword.
OTHER_ATTRIBUTES = "attributes"
#: Longest value accepted for one matching key.
MAX_VALUE_LENGTH = 1024
MAX_LIST_VALUES = 1000
LIST_VRS = frozenset({"UI", "CS"})
RANGE_VRS = frozenset({"DA", "TM", "DT"})
_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_DT = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$")
_PATTERNS = {"DA": (_DA, "YYYYMMDD"), "TM": (_TM, "HHMMSS.FFFFFF"), "DT": (_DT, "YYYYMMDDHHMMSS")}
NUMBER_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
COMPARISON = re.compile(r"^\s*(<=|>=|<|>|!=)\s*([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)\s*$")
NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_SQL_OPERATORS = {"<=": "<=", ">=": ">=", "<": "<", ">": ">", "!=": "<>"}


class InvalidQuery(ValueError):
    """A query key or value breaks a matching rule; the message says which."""


class Dialect:
    """The SQL of the functions in which DuckDB and PostgreSQL differ, DuckDB's here.

    The compiler writes everything else (joins, LIKE ... ESCAPE, ranges,
    ``IN`` lists, the scope's CTE) the same for both, with ``?`` for every
    bound value; :class:`PostgresDialect` gives the PostgreSQL forms, and the
    PostgreSQL index turns ``?`` into psycopg's ``%s`` when it runs a
    statement (see :mod:`pacsdash.archive.pg_index`).
    """

    name = "duckdb"

    def fold(self, sql: str) -> str:
        """``sql`` folded as names match: ``^`` as a space, lower case, no accents (see :func:`_pn_value`)."""
        return f"strip_accents(lower(replace({sql}, '^', ' ')))"

    def has_value(self, sql: str) -> str:
        """One of the backslash-separated values of ``sql`` equals the next parameter."""
        return f"list_contains(string_split({sql}, '\\'), ?)"

    def has_value_like(self, sql: str) -> str:
        """One of the backslash-separated values of ``sql`` is LIKE the next parameter."""
        return f"len(list_filter(string_split({sql}, '\\'), lambda v: v LIKE ? ESCAPE '\\')) > 0"

    def compare_numbers(self, sql: str, operator: str) -> str:
        """``sql`` as a number, or any of its backslash-separated values, compared with
        ``operator`` to the next two parameters (the same number twice)."""
        return (f"(TRY_CAST({sql} AS DOUBLE) {operator} ? OR (contains({sql}, '\\') AND "
                f"len(list_filter(string_split({sql}, '\\'), lambda x: TRY_CAST(trim(x) AS DOUBLE) {operator} ?)) > 0))")

    def number(self, sql: str) -> str:
        """``sql`` as a DOUBLE, NULL when it is no number."""
        return f"TRY_CAST({sql} AS DOUBLE)"

    def instance_order(self, sql: str) -> str:
        """InstanceNumber ``sql`` as the number instances of a series are ordered by."""
        return f"TRY_CAST({sql} AS INTEGER)"

    def json_value(self, sql: str, tag: int) -> str:
        """The value of ``tag`` in the attribute JSON ``sql`` (a tag formatted here, never a request's text)."""
        return f"json_extract_string({sql}, '$.\"{tag:08X}\"')"


class PostgresDialect(Dialect):
    """PostgreSQL's forms. ``pacsdash_fold`` and ``pacsdash_number`` are SQL
    functions the index's first migration creates (IMMUTABLE, so that an
    expression index can hold the folded names)."""

    name = "postgresql"

    def fold(self, sql: str) -> str:
        return f"pacsdash_fold({sql})"

    def has_value(self, sql: str) -> str:
        return f"? = ANY(string_to_array({sql}, '\\'))"

    def has_value_like(self, sql: str) -> str:
        return f"EXISTS (SELECT 1 FROM unnest(string_to_array({sql}, '\\')) AS u(item) WHERE u.item LIKE ? ESCAPE '\\')"

    def compare_numbers(self, sql: str, operator: str) -> str:
        return (f"(pacsdash_number({sql}) {operator} ? OR (strpos({sql}, '\\') > 0 AND EXISTS (SELECT 1 FROM "
                f"unnest(string_to_array({sql}, '\\')) AS u(item) WHERE pacsdash_number(trim(u.item)) {operator} ?)))")

    def number(self, sql: str) -> str:
        return f"pacsdash_number({sql})"

    def instance_order(self, sql: str) -> str:
        return f"pacsdash_number({sql})"

    def json_value(self, sql: str, tag: int) -> str:
        return f"(CAST({sql} AS jsonb) ->> '{tag:08X}')"


DUCKDB = Dialect()
POSTGRESQL = PostgresDialect()


#: Table of study labels (see :mod:`pacsdash.archive.labels`).
LABELS_TABLE = "study_labels"


@dataclass(frozen=True)
class Scope:
    """The studies someone may see: those holding at least one of ``labels``.

    ``None`` in place of a scope means every study (an unrestricted user);
    a scope with no labels sees nothing.
    """

    labels: frozenset[str]

    @classmethod
    def of(cls, labels: "Iterable[str] | None") -> "Scope | None":
        """The scope of a user or peer restricted to ``labels``; None when unrestricted (no labels)."""
        labels = frozenset(labels or ())
        return cls(labels) if labels else None

    def studies_sql(self) -> tuple[str, list]:
        """A SELECT of the visible StudyInstanceUIDs and its parameters."""
        if not self.labels:
            return 'SELECT NULL AS "StudyInstanceUID" WHERE false', []
        labels = sorted(self.labels)
        marks = ", ".join("?" * len(labels))
        return f'SELECT "StudyInstanceUID" FROM {LABELS_TABLE} WHERE label IN ({marks})', labels

    def sees(self, study_labels: "Iterable[str]") -> bool:
        """Whether a study with ``study_labels`` is visible."""
        return not self.labels.isdisjoint(study_labels)


@dataclass
class Query:
    """A search at one level, as every door expresses it.

    Parameters
    ----------
    level
        The Query/Retrieve level of the entities returned.
    filters
        Keyword (or tag) -> matching value, in DICOM matching syntax. An empty
        value asks for the attribute to be returned without constraining.
    fields
        Further keywords or tags to return.
    limit, offset
        Paging; results are ordered so that pages neither overlap nor skip.
    order_by
        ``(keyword, descending)`` pairs; the level's unique key always breaks
        ties.
    """

    level: Level
    filters: dict[str, str] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    order_by: list[tuple[str, bool]] = field(default_factory=list)
    #: Also return the level's usual attributes; False returns only the
    #: unique key, the filters and ``fields`` (what C-FIND asks for).
    include_defaults: bool = True
    #: Text (LO, SH, ST, LT, UT, UC) matches regardless of case and accents,
    #: as names always do: what people typing in a search box expect.
    fold_text: bool = False
    #: At the IMAGE level, also return every other attribute the index keeps
    #: of each instance: its attribute JSON (8-hex-digit tag -> DICOM text),
    #: as text, under the row key :data:`OTHER_ATTRIBUTES`.
    other_attributes: bool = False
    #: Whose search this is: only studies it may see match (None: every study).
    scope: Scope | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise InvalidQuery(f"limit must be zero or more, got {self.limit}")
        if self.offset < 0:
            raise InvalidQuery(f"offset must be zero or more, got {self.offset}")


#: For each level, the aliases joined into its FROM clause, nearest first.
_CHAIN: dict[Level, tuple[tuple[str, Level], ...]] = {
    Level.PATIENT: (("p", Level.PATIENT),),
    Level.STUDY: (("s", Level.STUDY),),
    Level.SERIES: (("se", Level.SERIES), ("s", Level.STUDY)),
    Level.IMAGE: (("i", Level.IMAGE), ("se", Level.SERIES), ("s", Level.STUDY)),
}
_FROM = {
    Level.PATIENT: "patients p",
    Level.STUDY: "studies s",
    Level.SERIES: 'series se JOIN studies s ON se."StudyInstanceUID" = s."StudyInstanceUID"',
    Level.IMAGE: (
        'instances i JOIN series se ON i."SeriesInstanceUID" = se."SeriesInstanceUID" '
        'JOIN studies s ON i."StudyInstanceUID" = s."StudyInstanceUID"'
    ),
}
#: Columns of each table, the stored summaries (counts, ModalitiesInStudy) included.
_COLUMNS = {level: {a.keyword for a in attrs} for level, attrs in TABLE_ATTRIBUTES.items()}
_STUDY_OF_PATIENT = 'x."StudyInstanceUID" IN (SELECT y."StudyInstanceUID" FROM studies y WHERE y."PatientID" = p."PatientID")'
#: Patient attributes computed from the rows below a patient, with the alias they need.
#: (Study and series summaries are stored columns: see :mod:`pacsdash.archive.summaries`.)
_DERIVED: dict[str, tuple[str, str]] = {
    "NumberOfPatientRelatedStudies": ("p", '(SELECT count(*) FROM studies x WHERE x."PatientID" = p."PatientID")'),
    "NumberOfPatientRelatedSeries": (
        "p",
        '(SELECT sum(x."NumberOfStudyRelatedSeries") FROM studies x WHERE x."PatientID" = p."PatientID")',
    ),
    "NumberOfPatientRelatedInstances": (
        "p",
        '(SELECT sum(x."NumberOfStudyRelatedInstances") FROM studies x WHERE x."PatientID" = p."PatientID")',
    ),
}


def _owner_table(attr: Attribute) -> Level | None:
    """The most specific table with a column for ``attr`` (None: JSON only)."""
    for level in (Level.IMAGE, Level.SERIES, Level.STUDY, Level.PATIENT):
        if attr.keyword in _COLUMNS[level]:
            return level
    return None


def _tie(level: Level, outer: str) -> str:
    """SQL tying rows ``x`` of table ``level`` to the outer entity alias."""
    if outer == "p":
        if level is Level.STUDY:
            return 'x."PatientID" = p."PatientID"'
        return (
            'x."StudyInstanceUID" IN (SELECT y."StudyInstanceUID" FROM studies y '
            'WHERE y."PatientID" = p."PatientID")'
        )
    if outer == "s":
        return 'x."StudyInstanceUID" = s."StudyInstanceUID"'
    if outer == "se":
        return 'x."SeriesInstanceUID" = se."SeriesInstanceUID"'
    return 'x."SOPInstanceUID" = i."SOPInstanceUID"'


@dataclass
class _Expr:
    """Where an attribute's value is, seen from a query level."""

    sql: str
    #: None: a column of the level's own rows; else the level of the rows
    #: looked into (alias ``x``), tied to the query's entity by :func:`_tie`.
    via: Level | None = None
    #: The table of those rows, when not ``via``'s own.
    table: str | None = None
    #: SQL choosing the rows of ``table`` that hold the attribute.
    holds: str | None = None

    def rows(self, outer: str) -> str:
        """FROM and WHERE of the rows (alias ``x``) below the entity ``outer`` holding the value."""
        where = _tie(self.via, outer) + (f" AND {self.holds}" if self.holds else "")
        return f"FROM {self.table or self.via.table} x WHERE {where}"


def _locate(level: Level, attr: Attribute, dialect: Dialect = DUCKDB) -> _Expr:
    if attr.keyword in _DERIVED:
        alias, sql = _DERIVED[attr.keyword]
        if any(a == alias for a, _ in _CHAIN[level]):
            return _Expr(f"CAST({sql} AS VARCHAR)")
        return _Expr("CAST(NULL AS VARCHAR)")
    for alias, table in _CHAIN[level]:
        if attr.keyword in _COLUMNS[table]:
            column = f'{alias}."{attr.keyword}"'
            return _Expr(f"CAST({column} AS VARCHAR)" if attr.derived else column)
    if attr.derived:  # a summary of a level above this query's (a study's, asked of a patient)
        return _Expr("CAST(NULL AS VARCHAR)")
    owner = _owner_table(attr)
    if owner is not None:
        return _Expr(f'x."{attr.keyword}"', via=owner)
    if level is Level.IMAGE:
        return _Expr(dialect.json_value("i.attributes", attr.tag))
    # Any instance of the entity: its series' distinct values hold the same
    # answers, on a few rows per series (see pacsdash.archive.summaries).
    return _Expr("x.value", via=Level.IMAGE, table=VALUES_TABLE, holds=f"x.tag = '{attr.tag:08X}'")


def _check_value(attr: Attribute, value: str) -> None:
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidQuery(
            f"{attr.keyword} value is {len(value)} characters long; at most "
            f"{MAX_VALUE_LENGTH} are accepted"
        )
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise InvalidQuery(f"{attr.keyword} value contains control characters")


def _like_pattern(value: str) -> str:
    out = []
    for ch in value:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _pn_value(value: str) -> str:
    import unicodedata

    text = value.replace("^", " ").lower()
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _range_condition(sql: str, attr: Attribute, value: str, params: list) -> str:
    low, _, high = value.partition("-")
    pattern, form = _PATTERNS[attr.vr]
    if not low and not high:  # PS3.4 C.2.2.2.5: a range has at least one end
        raise InvalidQuery(f"{attr.keyword} '{value}' is a range with neither end ({form}-{form})")
    for bound in (low, high):
        if bound and not pattern.match(bound):
            raise InvalidQuery(f"{attr.keyword} '{value}' is not a valid {attr.vr} range ({form}-{form})")
    if low and high and high < low:
        raise InvalidQuery(f"{attr.keyword} range '{value}' ends before it starts")
    parts = []
    if low:
        parts.append(f"{sql} >= ?")
        params.append(low)
    if high:
        # An upper bound given with less precision includes its whole span:
        # "-1200" includes 12:00:30.
        parts.append(f"({sql} <= ? OR starts_with({sql}, ?))")
        params.extend([high, high])
    return "(" + " AND ".join(parts) + ")"


FOLDED_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})


def _value_condition(sql: str, attr: Attribute, value: str, params: list, fold: bool = False,
                     dialect: Dialect = DUCKDB) -> str:
    """SQL matching ``sql`` against one non-range value (single or wildcard)."""
    if attr.vr == "PN" or (fold and attr.vr in FOLDED_VRS):
        sql = dialect.fold(sql)
        value = _pn_value(value)
    if attr.vr != "UI" and ("*" in value or "?" in value):
        params.append(_like_pattern(value))
        if attr.vr == "CS":
            return dialect.has_value_like(sql)
        return f"{sql} LIKE ? ESCAPE '\\'"
    params.append(value)
    if attr.vr == "CS":
        return dialect.has_value(sql)
    return f"{sql} = ?"


def match_condition(sql: str, attr: Attribute, value: str, params: list, fold: bool = False,
                    dialect: Dialect = DUCKDB) -> str | None:
    """Parameterised SQL matching the expression ``sql`` with ``value``.

    Returns None for universal matching. Raises :class:`InvalidQuery` when the
    value breaks the rules of its VR. ``fold``: text matches regardless of
    case and accents (see :attr:`Query.fold_text`). ``dialect``: the database's SQL.
    """
    _check_value(attr, value)
    value = value.strip(" ") if attr.vr not in ("LT", "ST", "UT") else value
    if value in ("", "*"):
        return None
    comparison = COMPARISON.match(value) if attr.vr in NUMBER_VRS else None
    if comparison:
        # Any of the values (PixelSpacing "0.5\\0.5" is "<1"), as the client's own filter does.
        operator, number = _SQL_OPERATORS[comparison.group(1)], float(comparison.group(2))
        params.extend([number, number])
        return dialect.compare_numbers(sql, operator)
    if attr.vr in NUMBER_VRS and NUMBER.match(value):
        # A number matches its value however it was written: KVP=120 finds "120.0".
        params.extend([value, float(value)])
        return f"({sql} = ? OR {dialect.number(sql)} = ?)"
    if attr.vr in RANGE_VRS:
        if "-" in value and not (attr.vr == "DT" and value.count("-") != 1):
            return _range_condition(sql, attr, value, params)
        pattern, form = _PATTERNS[attr.vr]
        if "*" not in value and "?" not in value and not pattern.match(value):
            raise InvalidQuery(f"{attr.keyword} '{value}' is not a valid {attr.vr} ({form})")
    if attr.vr == "UI" and ("*" in value or "?" in value):
        raise InvalidQuery(f"{attr.keyword}: wildcards are not allowed in UIDs (PS3.4 C.2.2.2.4)")
    values = value.split("\\") if attr.vr in LIST_VRS else [value]
    if len(values) > MAX_LIST_VALUES:
        raise InvalidQuery(f"{attr.keyword}: at most {MAX_LIST_VALUES} values in a list")
    if attr.vr == "UI":
        for uid in values:
            if not re.match(r"^[0-9.]{1,64}$", uid):
                raise InvalidQuery(f"{attr.keyword} {uid[:80]!r} is not a valid UID")
        params.extend(values)
        return f"{sql} IN ({', '.join('?' * len(values))})"
    parts = [_value_condition(sql, attr, v, params, fold, dialect) for v in values if v != ""]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


@dataclass
class CompiledQuery:
    """SQL text, its parameters and the keywords of the columns it returns."""

    sql: str
    params: list
    columns: list[Attribute]
    #: Row keys of the values that follow the columns' (before any extra_columns).
    extra_keys: list[str] = field(default_factory=list)


def resolve(names: list[str] | dict[str, str]) -> list[Attribute]:
    """Attributes for keywords or tags; :class:`InvalidQuery` names a bad one."""
    out = []
    for name in names:
        try:
            out.append(attribute_for(name))
        except KeyError as exc:
            raise InvalidQuery(str(exc.args[0])) from None
    return out


def default_return_keys(level: Level) -> list[Attribute]:
    """The attributes a level returns when none are asked for."""
    attrs = list(TABLE_ATTRIBUTES[level])
    if level is Level.PATIENT:
        attrs += list(PATIENT_DERIVED)
    return attrs


def compile_query(query: Query, extra_columns: tuple[str, ...] = (), dialect: Dialect = DUCKDB) -> CompiledQuery:
    """Turn ``query`` into one parameterised SELECT.

    Parameters
    ----------
    query
        The search.
    extra_columns
        Raw SQL expressions over the level's aliases to add at the end of
        each row (used internally, never from a request).
    dialect
        The database's SQL (DuckDB unless told).
    """
    level = query.level
    where, params = _conditions(query, dialect)
    outer = _CHAIN[level][0][0]
    wanted: dict[str, Attribute] = {}
    defaults = default_return_keys(level) if query.include_defaults else [BY_KEYWORD[level.unique_key]]
    for attr in defaults + resolve(list(query.filters)) + resolve(query.fields):
        wanted.setdefault(attr.keyword, attr)
    select = [_returned(level, attr, outer, dialect) for attr in wanted.values()]
    extra_keys = []
    if query.other_attributes and level is Level.IMAGE:
        select.append("i.attributes")
        extra_keys.append(OTHER_ATTRIBUTES)
    select.extend(extra_columns)

    order: list[str] = []
    for name, descending in query.order_by:
        attr = resolve([name])[0]
        expr = _locate(level, attr, dialect)
        if expr.via is not None:
            raise InvalidQuery(f"cannot sort {level.value} results by {attr.keyword}")
        order.append(f"{expr.sql} {'DESC' if descending else 'ASC'} NULLS LAST")
    order.append(f'{outer}."{level.unique_key}"')

    key = f'{outer}."{level.unique_key}"'
    filtered = f" FROM {_FROM[level]}" + (" WHERE " + " AND ".join(where) if where else "")
    ordered = " ORDER BY " + ", ".join(order)
    if query.limit is None and not query.offset:
        sql = f"SELECT {', '.join(select)}{filtered}{ordered}"
        return _scoped(CompiledQuery(sql, params, list(wanted.values()), extra_keys), query.scope)
    # A page: choose its keys first, then compute the returned values (counts,
    # ModalitiesInStudy, values from other tables) for those rows only.
    page = f"SELECT {key}{filtered}{ordered}"
    if query.limit is not None:
        page += " LIMIT ?"
        params.append(query.limit)
    if query.offset:
        page += " OFFSET ?"
        params.append(query.offset)
    sql = f"SELECT {', '.join(select)} FROM {_FROM[level]} WHERE {key} IN ({page}){ordered}"
    return _scoped(CompiledQuery(sql, params, list(wanted.values()), extra_keys), query.scope)


#: The studies table, as every compiled statement names it (and only it).
_STUDIES = re.compile(r"\bstudies\b")
#: What a scoped statement reads instead: the visible studies, defined by a CTE.
VISIBLE_STUDIES = "visible_studies"


def _scoped(compiled: CompiledQuery, scope: Scope | None) -> CompiledQuery:
    """``compiled`` reading only the studies ``scope`` may see.

    Every statement reaches patients, series and instances through the
    studies table (joined, or tied by :func:`_tie` and the derived counts;
    a scoped PATIENT query asks for a study of the patient in
    :func:`_conditions`), so reading a CTE of the visible studies in its
    place scopes every row, count and value. The CTE comes first, and so do
    its parameters.
    """
    if scope is None:
        return compiled
    studies, labels = scope.studies_sql()
    body = _STUDIES.sub(VISIBLE_STUDIES, compiled.sql)
    cte = f"WITH {VISIBLE_STUDIES} AS (SELECT * FROM studies WHERE \"StudyInstanceUID\" IN ({studies})) "
    return CompiledQuery(cte + body, labels + compiled.params, compiled.columns, compiled.extra_keys)


def _returned(level: Level, attr: Attribute, outer: str, dialect: Dialect = DUCKDB) -> str:
    """SQL of ``attr``'s returned value; from rows below, the first that has one."""
    expr = _locate(level, attr, dialect)
    if expr.via is None:
        return expr.sql
    if expr.table == VALUES_TABLE:  # the value first indexed
        return f"(SELECT {expr.sql} {expr.rows(outer)} ORDER BY x.rowid LIMIT 1)"
    return f"(SELECT {expr.sql} {expr.rows(outer)} AND {expr.sql} IS NOT NULL LIMIT 1)"


def _conditions(query: Query, dialect: Dialect = DUCKDB) -> tuple[list[str], list]:
    """The WHERE conditions of ``query``'s filters (PS3.4 C.2.2.2) and their parameters."""
    level = query.level
    where: list[str] = []
    params: list = []
    if query.scope is not None and level is Level.PATIENT:
        # A patient none of whose studies may be seen is not there (see _scoped).
        where.append('EXISTS (SELECT 1 FROM studies v WHERE v."PatientID" = p."PatientID")')
    for name, value in query.filters.items():
        attr = resolve([name])[0]
        if not isinstance(value, str):
            raise InvalidQuery(f"{attr.keyword} must be given as text")
        if attr.keyword == "ModalitiesInStudy" and level is Level.PATIENT:
            # Match the patient's series (C.6.2.1.2); below the patient level
            # the stored list matches value by value, as any multi-valued CS.
            modality = BY_KEYWORD["Modality"]
            sub_params: list = []
            cond = match_condition('x."Modality"', modality, value, sub_params, dialect=dialect)
            if cond is not None:
                where.append(f"EXISTS (SELECT 1 FROM series x WHERE {_tie(Level.SERIES, 'p')} AND {cond})")
                params.extend(sub_params)
            continue
        expr = _locate(level, attr, dialect)
        sub_params = []
        cond = match_condition(expr.sql, attr, value, sub_params, query.fold_text, dialect)
        if cond is None:
            continue
        if expr.via is None:
            where.append(cond)
        else:
            where.append(f"EXISTS (SELECT 1 {expr.rows(_CHAIN[level][0][0])} AND {cond})")
        params.extend(sub_params)
    return where, params


#: What :func:`compile_locate` returns of each instance (an InstanceLocation's fields, in order).
LOCATION_COLUMNS = ('SELECT "SOPInstanceUID", "SOPClassUID", "TransferSyntaxUID", "StudyInstanceUID", '
                    '"SeriesInstanceUID", file, size FROM instances i')
LOCATE_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def compile_locate(level: Level, uid: str | None, scope: Scope | None, keys: dict[str, str],
                   dialect: Dialect = DUCKDB) -> tuple[str, list]:
    """SQL of the instances under one entity (``uid`` at ``level``; a PatientID at
    the PATIENT level) and matching exact UID ``keys``, within ``scope``, with their
    files, in series and instance-number order; and its parameters."""
    where: list[str] = []
    params: list = []
    if scope is not None:
        visible, params = scope.studies_sql()
        where.append(f'i."StudyInstanceUID" IN ({visible})')
    if uid is not None:
        if level is Level.PATIENT:
            where.append('i."StudyInstanceUID" IN (SELECT "StudyInstanceUID" FROM studies WHERE "PatientID" = ?)')
        else:
            where.append(f'i."{level.unique_key}" = ?')
        params.append(uid)
    for keyword, value in keys.items():
        if keyword not in LOCATE_KEYS:
            raise ValueError(f"cannot locate instances by {keyword}")
        where.append(f'i."{keyword}" = ?')
        params.append(value)
    sql = LOCATION_COLUMNS + (" WHERE " + " AND ".join(where) if where else "")
    number = dialect.instance_order('"InstanceNumber"')
    sql += f' ORDER BY "SeriesInstanceUID", {number} NULLS LAST, "SOPInstanceUID"'
    return sql, params


def conditions(query: Query, dialect: Dialect = DUCKDB) -> tuple[list[str], list]:
    """The SQL conditions (over the level's aliases) matching ``query``'s
    filters and scope, with their parameters; for statements built elsewhere
    (label rules)."""
    return _conditions(query, dialect)


def compile_count(query: Query, dialect: Dialect = DUCKDB) -> tuple[str, list]:
    """SQL counting every match of ``query``, ignoring paging (no returned values computed)."""
    where, params = _conditions(query, dialect)
    sql = f"SELECT count(*) FROM {_FROM[query.level]}" + (" WHERE " + " AND ".join(where) if where else "")
    compiled = _scoped(CompiledQuery(sql, params, []), query.scope)
    return compiled.sql, compiled.params
