"""The demo home: generated studies plus the sample files shipped with the project."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from tqdm import tqdm

from pacsdash.config import Settings, init_home

LOGGER = logging.getLogger(__name__)
#: Real-world sample files shipped in the repository (absent from a wheel).
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "dicom-samples" / "valid"


def make_demo_home(settings: Settings) -> None:
    """Fill ``settings.home`` with generated studies and the shipped samples.

    Does nothing to an index that already holds instances.
    """
    from pacsdash.access import Accounts
    from pacsdash.archive import Archive, store_many
    from pacsdash.demo.generate import write_demo
    from pacsdash.runtime import HomeLock

    init_home(settings.home)
    accounts = Accounts(settings.accounts_path, settings.modalities)
    if not accounts.users():
        for name, role in (("admin", "admin"), ("editor", "editor"), ("viewer", "viewer")):
            accounts.add_user(name, role, name)
        print("demo users: admin/admin, editor/editor, viewer/viewer (change them for real use)")
    with HomeLock(settings.run_path), Archive.open_home(settings.store_path, settings.index_path) as archive:
        if archive.index.totals()["instances"]:
            print(f"{settings.home} already holds studies; serving them as they are")
            return
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
