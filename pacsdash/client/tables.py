"""QIDO-RS results (DICOM JSON, PS3.18 F.2) as pandas DataFrames.

One row per result; columns named by DICOM keyword; dates and date-times
as pandas datetimes, times of day as :class:`datetime.time`, numbers as
numbers, person names as readable strings (``Doe, Jane``); several values
as a list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import pandas as pd
from pydicom.datadict import keyword_for_tag

from pacsdash.client.conditions import OLD_DATE

NUMBER_VRS = {"IS": int, "DS": float, "US": int, "SS": int, "UL": int, "SL": int, "UV": int, "SV": int,
              "FL": float, "FD": float}


def person_name(value: Any) -> str:
    """``Doe, Jane`` from a DICOM JSON PN value (``{"Alphabetic": "Doe^Jane"}``)."""
    text = value.get("Alphabetic", "") if isinstance(value, dict) else str(value or "")
    parts = [p.strip() for p in text.split("^")]
    family, given = (parts + ["", ""])[:2]
    rest = " ".join(p for p in parts[2:] if p)
    name = f"{family}, {given}" if family and given else family or given
    return f"{name} {rest}".strip()


def _time(text: str) -> dt.time | None:
    digits = text.split(".")[0].strip()
    if not digits.isdigit() or len(digits) not in (2, 4, 6):
        return None
    fraction = text.split(".")[1] if "." in text else ""
    micro = int((fraction + "000000")[:6]) if fraction.isdigit() else 0
    try:
        return dt.time(int(digits[:2]), int(digits[2:4] or 0), int(digits[4:6] or 0), micro)
    except ValueError:
        return None


def _value(vr: str, values: list) -> Any:
    if vr == "PN":
        converted = [person_name(v) for v in values]
    elif vr in NUMBER_VRS:
        kind = NUMBER_VRS[vr]
        converted = []
        for v in values:
            try:
                converted.append(kind(v) if not (kind is int and isinstance(v, str) and "." in v) else float(v))
            except (TypeError, ValueError):
                converted.append(None)
    elif vr == "SQ":
        return values  # nested items, as DICOM JSON
    else:
        converted = [v.get("Alphabetic") if isinstance(v, dict) else v for v in values]
    return converted[0] if len(converted) == 1 else converted


def keyword(tag: str) -> str:
    """The keyword of an 8-hex-digit tag, or the tag itself when private/unknown."""
    try:
        return keyword_for_tag(int(tag, 16)) or tag
    except ValueError:
        return tag


def rows(results: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Plain rows (keyword -> value) and the VR of each column."""
    out, vrs = [], {}
    for item in results:
        row = {}
        for tag, element in item.items():
            name = keyword(tag)
            vr = element.get("vr", "")
            vrs.setdefault(name, vr)
            values = element.get("Value")
            row[name] = _value(vr, values) if values else None
        out.append(row)
    return out, vrs


def to_frame(results: Iterable[dict[str, Any]], columns: Iterable[str] = ()) -> pd.DataFrame:
    """A DataFrame of QIDO-RS results, typed by each column's VR; ``columns``
    are there even when no result has them (an empty result has them all)."""
    plain, vrs = rows(results)
    frame = pd.DataFrame(plain)
    for column in columns:
        if column not in frame:
            frame[column] = pd.Series([None] * len(frame), dtype=object)
    for column, vr in vrs.items():
        if column not in frame:
            continue
        if vr == "DA":
            # ACR-NEMA's YYYY.MM.DD still found in old files reads as the date it is
            text = frame[column].map(lambda v: v.replace(".", "") if isinstance(v, str) and OLD_DATE.match(v) else v)
            frame[column] = pd.to_datetime(text, format="%Y%m%d", errors="coerce")
        elif vr == "DT":
            frame[column] = pd.to_datetime(frame[column].astype("string").str.slice(0, 14), format="mixed",
                                           errors="coerce")
        elif vr == "TM":
            frame[column] = frame[column].map(lambda v: _time(v) if isinstance(v, str) else None)
        elif vr in NUMBER_VRS and not frame[column].map(lambda v: isinstance(v, list)).any():
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame
