"""OHIF Viewer's built ``dist/``, fetched once from npm into a cache outside the repo.

The npm package ``@ohif/app`` ships the production build of the viewer in
``dist/``. :func:`ensure_ohif_dist` runs ``npm pack @ohif/app@VERSION`` (no
install, no scripts), checks the tarball against the pinned sha512 integrity,
unpacks ``package/dist`` into ``CACHE/ohif-VERSION/dist`` and marks it
complete; later runs reuse it. The cache is ``$PACSDASH_TEST_CACHE`` or
``$XDG_CACHE_HOME/pacsdash-tests`` (default ``~/.cache/pacsdash-tests``).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

#: The OHIF release these tests were written and run against.
OHIF_VERSION = "3.13.2"
#: ``npm view @ohif/app@3.13.2 dist.integrity``
OHIF_INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="


class OhifUnavailable(RuntimeError):
    """npm or the registry is not there: the tests cannot get OHIF."""


def cache_root() -> Path:
    if os.environ.get("PACSDASH_TEST_CACHE"):
        return Path(os.environ["PACSDASH_TEST_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pacsdash-tests"


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def _npm_pack(destination: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise OhifUnavailable("npm is not installed (needed once to fetch @ohif/app's built viewer)")
    try:
        result = subprocess.run(
            [npm, "pack", f"@ohif/app@{OHIF_VERSION}", "--pack-destination", str(destination), "--json",
             "--ignore-scripts", "--no-audit", "--no-fund",
             # An unreachable registry should be reported in seconds, not minutes.
             "--fetch-retries=2", "--fetch-retry-mintimeout=2000", "--fetch-retry-maxtimeout=10000"],
            check=False, capture_output=True, text=True, timeout=600, cwd=destination,
        )
    except subprocess.TimeoutExpired as exc:
        raise OhifUnavailable(f"npm pack @ohif/app@{OHIF_VERSION} timed out") from exc
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        telling = [line for line in lines if any(word in line for word in ("code", "errno", "request to", "404"))]
        raise OhifUnavailable(f"npm pack @ohif/app@{OHIF_VERSION} failed (registry unreachable?): "
                              + " / ".join((telling or lines)[-3:]))
    try:
        name = json.loads(result.stdout)[0]["filename"]
    except (ValueError, LookupError):
        name = result.stdout.strip().splitlines()[-1]
    tarball = destination / name.replace("@", "").replace("/", "-")
    if not tarball.exists():
        candidates = list(destination.glob("*.tgz"))
        if len(candidates) != 1:
            raise RuntimeError(f"npm pack wrote no single tarball into {destination}: {result.stdout!r}")
        tarball = candidates[0]
    return tarball


def ensure_ohif_dist() -> Path:
    """The ``dist/`` folder of ``@ohif/app@OHIF_VERSION``, fetched on first use."""
    folder = cache_root() / f"ohif-{OHIF_VERSION}"
    dist, marker = folder / "dist", folder / ".complete"
    if marker.exists() and (dist / "index.html").exists():
        return dist
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"ohif-{OHIF_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch at a time (parallel runs)
        if marker.exists() and (dist / "index.html").exists():
            return dist
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".ohif-{OHIF_VERSION}-") as scratch:
            scratch_path = Path(scratch)
            tarball = _npm_pack(scratch_path)
            found = _integrity(tarball)
            if found != OHIF_INTEGRITY:
                raise RuntimeError(f"{tarball.name}: integrity {found} is not the pinned {OHIF_INTEGRITY}")
            unpacked = scratch_path / "unpacked"
            with tarfile.open(tarball) as archive:
                members = [m for m in archive.getmembers()
                           if m.name.startswith("package/dist/") or m.name == "package/package.json"]
                if any(not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in m.name.split("/")
                       for m in members):
                    raise RuntimeError(f"{tarball.name} holds links or paths outside its folder")
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
                archive.extractall(unpacked, members=members, **safe)
            if not (unpacked / "package" / "dist" / "index.html").exists():
                raise RuntimeError(f"{tarball.name} has no dist/index.html")
            shutil.rmtree(folder, ignore_errors=True)
            (unpacked / "package").rename(folder)
        marker.write_text(OHIF_INTEGRITY + "\n")
    return dist
