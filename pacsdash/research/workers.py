"""De-identification in worker processes.

pydicom holds the GIL while it reads, walks and writes a header, so threads
de-identify at the speed of one core. Large studies are de-identified by a
small pool of processes (made on first use, kept for the next): each gets
the instance's bytes, the project secret and the options, and gives back
the de-identified bytes. Storing stays in the server process.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any

#: Studies with fewer instances are de-identified in threads (no process start-up).
PROCESS_THRESHOLD = 16
_POOL: ProcessPoolExecutor | None = None
_LOCK = threading.Lock()
#: In a worker: de-identifiers by (secret, options).
_MADE: dict[tuple[bytes, tuple[str, ...]], Any] = {}


def pool() -> ProcessPoolExecutor:
    """The shared pool (one process per core, at most 4)."""
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ProcessPoolExecutor(max_workers=max(1, min(os.cpu_count() or 2, 4)),
                                        mp_context=multiprocessing.get_context("spawn"))
            atexit.register(shutdown)
        return _POOL


def shutdown() -> None:
    global _POOL
    with _LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
            _POOL = None


def deidentify_in_worker(source: bytes | str, secret: bytes, options: tuple[str, ...], include_burned_in: bool,
                         origin: str = "") -> tuple[bytes | None, int, str, str, tuple[str, str], Any]:
    """In a worker, one instance given as bytes or as the path of its stored file:
    ``(de-identified bytes or None, pixels, reason, pseudonym, (PatientID, Issuer), record)``.

    When the instance ends with its Pixel Data element, only the de-identified
    header comes back and ``pixels`` is where that element starts in the
    stored file: the caller appends it from there (no 512 KB through a pipe
    twice per CT slice). Otherwise ``pixels`` is -1 and the bytes are whole.
    ``record`` is the archive's index record of the whole de-identified
    instance (:func:`~pacsdash.archive.parsing.parse_instance`), parsed here
    so that the server process, which stores it, does not read it again; None
    if it cannot be parsed (the server's own parse then says why).
    """
    from pacsdash.archive import InvalidInstance
    from pacsdash.archive.parsing import parse_instance
    from pacsdash.research.anonymize import deidentify_instance
    from pacsdash.research.deidentify import Deidentifier
    from pacsdash.research.options import Option
    from pacsdash.research.pseudonyms import Pseudonymizer

    key = (secret, options)
    deidentifier = _MADE.get(key)
    if deidentifier is None:
        deidentifier = _MADE[key] = Deidentifier(Pseudonymizer(secret), [Option(o) for o in options])
    if isinstance(source, str):
        with open(source, "rb") as handle:
            raw = handle.read()
    else:
        raw = source
    seen: list[tuple[str, str, str]] = []
    done, reason = deidentify_instance(raw, deidentifier, include_burned_in, lambda *who: seen.append(who))
    if done is None:
        return None, -1, reason, "", ("", ""), None
    pseudonym, patient_id, issuer = seen[0] if seen else (done.subject.PatientID, "", "")
    try:
        record = parse_instance(done.data, origin)
    except InvalidInstance:
        record = None
    if isinstance(source, str) and done.pixels_at >= 0:
        header = done.data[: len(done.data) - (len(raw) - done.pixels_at)]
        return header, done.pixels_at, "", pseudonym, (patient_id, issuer), record
    return done.data, -1, "", pseudonym, (patient_id, issuer), record
