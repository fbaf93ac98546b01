"""The audit trail's CSV (``pacsdash audit --csv``, ``GET /api/audit?format=csv``, the admin
page's download): what strangers typed stays text in a spreadsheet (CWE-1236)."""

from __future__ import annotations

import csv
import io

from pacsdash.archive.audit import as_csv


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_a_user_name_shaped_as_a_formula_is_written_as_text():
    entries = [{"time": "2026-12-03T10:00:00+00:00", "user": name, "address": "127.0.0.1", "action": "login",
                "outcome": "failure", "studies": []}
               for name in ('=HYPERLINK("http://evil","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "alice")]
    rows = _rows(as_csv(entries))
    assert rows[0] == ["time", "user", "address", "action", "outcome", "studies"]
    users = [row[1] for row in rows[1:]]
    assert users == ["'=HYPERLINK(\"http://evil\",\"x\")", "'+1+1", "'-2+3", "'@SUM(A1)", "'\tx", "alice"]
    assert all(not u.startswith(("=", "+", "-", "@", "\t")) for u in users)


def test_ordinary_values_and_study_lists_are_unchanged():
    entry = {"time": "2026-12-03T10:00:00+00:00", "user": "CT_SCANNER", "address": "::1", "action": "retrieve",
             "outcome": "success", "studies": ["1.2.3", "1.2.4"]}
    assert _rows(as_csv([entry]))[1] == ["2026-12-03T10:00:00+00:00", "CT_SCANNER", "::1", "retrieve", "success",
                                         "1.2.3\\1.2.4"]
