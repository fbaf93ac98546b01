"""The server's effective settings as rows to show, without secrets."""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from typing import Any

from pacsdash.config import Settings

#: Keys whose values are never shown.
SECRET_KEY = re.compile(r"password|secret|token|credential|(^|_)key$", re.IGNORECASE)
HIDDEN = "(hidden)"


def without_secret(key: str, value: Any) -> str:
    """``value`` as text, or :data:`HIDDEN` for a secret; a URL loses its password."""
    if SECRET_KEY.search(key):
        return HIDDEN if value else ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as written in pacsdash.toml
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    text = str(value)
    if "://" in text:
        parts = urllib.parse.urlsplit(text)
        if parts.password is not None:
            host = parts.hostname or ""
            netloc = f"{parts.username}:{HIDDEN}@{host}" + (f":{parts.port}" if parts.port else "")
            text = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return text


def settings_rows(settings: Settings, dicom_port: int = 0) -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting in effect, as in ``pacsdash.toml``, then the paths."""
    rows: list[tuple[str, str, str]] = []
    for section in ("server", "auth", "storage", "index"):
        for item in dataclasses.fields(getattr(settings, section)):
            rows.append((f"[{section}]", item.name,
                         without_secret(item.name, getattr(getattr(settings, section), item.name))))
    if dicom_port:
        rows.append(("listening", "dicom_port", str(dicom_port)))
    for peer in settings.modalities:
        rows.append((f"[modalities.{peer.name}]", "aet, host, port, allow",
                     f"{peer.aet}, {peer.host}, {peer.port}, {','.join(peer.allow)}"))
    for name in ("home", "store_path", "index_path", "accounts_path", "log_path"):
        rows.append(("paths", name, str(getattr(settings, name))))
    return rows
