"""Longitudinal pseudonyms from one project secret (PS3.15 E.3.6, E.3.9).

Everything is a keyed hash (HMAC-SHA256) of the original value under a
secret kept in the home, so the same patient gets the same pseudonym and
date shift, and the same UID the same replacement, in every study, every
run, after a restart and through every door, with no table to keep in step.
Without the secret the hashes cannot be reversed or recomputed; the map back
(for an admin's look-up) is kept apart, never in what is exported.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

#: Bytes of the project secret.
SECRET_BYTES = 32
#: Where the secret lives, relative to the home.
SECRET_NAME = "research/secret.key"
#: Date shifts lie in [-MAX_SHIFT_DAYS, MAX_SHIFT_DAYS], never 0.
MAX_SHIFT_DAYS = 3650
#: Characters of a subject pseudonym after its prefix (base32, 50 bits).
SUBJECT_LENGTH = 10
SUBJECT_PREFIX = "SUBJ"


@dataclass(frozen=True)
class Subject:
    """The pseudonymous identity of one patient."""

    PatientID: str
    PatientName: str
    shift_days: int


def load_secret(home: Path) -> bytes:
    """The home's project secret, made on first use (folder 0700, file 0600).

    Made whole before it appears: written and synced under a name of its own,
    then linked to its place, which fails if another process got there first
    (whose secret is then read). A reader never sees a half-written secret.

    Raises
    ------
    ValueError
        If the file there is not a secret of :data:`SECRET_BYTES` bytes.
    """
    path = Path(home) / SECRET_NAME
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fresh = secrets.token_bytes(SECRET_BYTES)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(fresh)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(partial, path)
            except FileExistsError:  # another process made it first: theirs counts
                secret = path.read_bytes()
            else:
                secret = fresh
        finally:
            partial.unlink(missing_ok=True)
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"{path} is not a pacsdash project secret ({len(secret)} bytes, expected {SECRET_BYTES})")
    return secret


class Pseudonymizer:
    """Pseudonyms, date shifts and UIDs, all keyed by one secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the project secret is too short")
        self._secret = secret
        self._uids: dict[str, str] = {}

    @property
    def secret(self) -> bytes:
        """The project secret (to hand to a de-identification worker process; never exported)."""
        return self._secret

    @classmethod
    def for_home(cls, home: Path) -> Pseudonymizer:
        return cls(load_secret(home))

    def _digest(self, purpose: str, *values: str) -> bytes:
        # Values are joined by U+001F; a backslash or a U+001F inside one is
        # escaped first, so two different lists never make one message (DICOM
        # text has neither, so real values hash as they always did).
        message = "\x1f".join((purpose, *(v.replace("\\", "\\\\").replace("\x1f", "\\x1f") for v in values)))
        return hmac.new(self._secret, message.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()

    def subject(self, patient_id: str, issuer: str = "") -> Subject:
        """The pseudonym and date shift of the patient ``(PatientID, IssuerOfPatientID)``."""
        digest = self._digest("subject", patient_id.strip(), issuer.strip())
        code = base64.b32encode(digest[:10]).decode("ascii")[:SUBJECT_LENGTH]
        pseudonym = f"{SUBJECT_PREFIX}-{code}"
        magnitude = int.from_bytes(digest[10:14], "big") % MAX_SHIFT_DAYS + 1
        shift = -magnitude if digest[14] & 1 else magnitude
        return Subject(PatientID=pseudonym, PatientName=pseudonym, shift_days=shift)

    def uid(self, original: str) -> str:
        """The replacement of a UID: ``2.25.`` and a 128-bit keyed hash (PS3.5 B.2).

        One to one for all practical purposes (a collision needs ~2**64 UIDs),
        so relations and references between instances still hold.
        """
        original = original.strip().rstrip("\x00")
        known = self._uids.get(original)
        if known is None:
            number = int.from_bytes(self._digest("uid", original)[:16], "big")
            known = self._uids[original] = f"2.25.{number}"
            if len(self._uids) > 1_000_000:
                self._uids.clear()
        return known
