"""The accounts of a home, chosen from its settings in one place.

Every process that reads or changes a home's users and peers (the server,
its DICOM workers, the command line, the demo) asks here: with a PostgreSQL
index (``[index] url``) they are in that database, shared by every server
using it; else in the home's SQLite file (``accounts.sqlite``).

The login throttle (:mod:`pacsdash.access.throttle`) stays per process: with
several servers behind one address, each counts the failures it saw.
"""

from __future__ import annotations

import logging

from pacsdash.access.accounts import Accounts, is_postgresql_url
from pacsdash.config import Settings

LOGGER = logging.getLogger(__name__)


def has_accounts(settings: Settings) -> bool:
    """Whether the home has accounts to read (a SQLite file that exists, or a
    PostgreSQL index, whose tables are created as they are first opened)."""
    return is_postgresql_url(settings.index.url) or settings.accounts_path.exists()


def open_accounts(settings: Settings) -> Accounts:
    """The home's users and peers, with pacsdash.toml's ``[modalities]`` listed first.

    Raises
    ------
    ConfigError
        When the PostgreSQL database cannot be reached (its tables are
        created there if missing, so ``users add`` may run before ``serve``).
    """
    if is_postgresql_url(settings.index.url):
        if settings.accounts_path.exists():
            LOGGER.warning("%s is not used: with the index in PostgreSQL, users and peers are in its database "
                           "(copy them there with pacsdash.access.copy_accounts)", settings.accounts_path)
        return Accounts(settings.index.url, settings.modalities)
    return Accounts(settings.accounts_path, settings.modalities)
