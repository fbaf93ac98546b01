"""The demo home: generated studies plus the sample files shipped with the project."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from pacsdash.config import CONFIG_NAME, Settings, init_home, set_server_option

LOGGER = logging.getLogger(__name__)
#: Real-world sample files shipped in the repository (absent from a wheel).
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "dicom-samples" / "valid"
#: Users of a demo home (each named after its role) and their passwords:
#: readable off the screen, and long enough for the password rule
#: (:data:`pacsdash.access.MIN_PASSWORD_LENGTH`).
DEMO_USERS = {"admin": "admin-demo-pw", "editor": "editor-demo-pw", "viewer": "viewer-demo-pw"}


def make_demo_home(settings: Settings) -> Settings:
    """Fill ``settings.home`` with generated studies and the shipped samples;
    return the settings to serve it with.

    A new demo home lets unregistered peers C-STORE (``accept_unknown_store``,
    off for ``serve``), so that a newcomer's ``storescu`` just works; its
    config file says so and can turn it off. Does nothing to an index that
    already holds instances.
    """
    from pacsdash.access import open_accounts
    from pacsdash.archive import store_many
    from pacsdash.archive.factory import open_archive
    from pacsdash.demo.generate import write_demo
    from pacsdash.runtime import HomeLock

    new_home = not (settings.home / CONFIG_NAME).exists()
    init_home(settings.home)
    if new_home:
        set_server_option(settings.home, "accept_unknown_store", True)
        settings = replace(settings, server=replace(settings.server, accept_unknown_store=True))
    accounts = open_accounts(settings)
    if not accounts.users():
        for name, password in DEMO_USERS.items():
            accounts.add_user(name, name, password)
        listed = ", ".join(f"{name}/{password}" for name, password in DEMO_USERS.items())
        print(f"demo users: {listed} (change them for real use)")
    with HomeLock(settings.run_path), open_archive(settings) as archive:
        if archive.index.totals()["instances"]:
            print(f"{settings.home} already holds studies; serving them as they are")
            return settings
        with tempfile.TemporaryDirectory() as tmp:
            files = write_demo(Path(tmp))
            if SAMPLES.is_dir():
                files += sorted(SAMPLES.glob("*.dcm"))
            failed = 0
            for path, result in tqdm(store_many(archive, files, origin="demo"), total=len(files), desc="demo studies", unit="file"):
                if isinstance(result, Exception):
                    failed += 1
                    LOGGER.warning("demo file %s not stored: %s", path.name, result)
        totals = archive.index.totals()
        print(f"demo home {settings.home}: {totals['studies']} studies, {totals['instances']} instances")
    return settings
