"""One table of storage outcomes: C-STORE, STOW-RS and uploads say the same thing."""

from __future__ import annotations


import pytest

from pacsdash.archive import InvalidInstance, Outcome
from pacsdash.archive.archive import StudyMismatch
from pacsdash.archive.outcomes import OUTCOMES, StoreOutcome, classify
from pacsdash.dashboard.ingest import FAILED, ingest


def test_every_outcome_has_its_codes_and_failures_share_dimse_and_stow_codes():
    assert set(OUTCOMES) == set(StoreOutcome)
    for outcome, codes in OUTCOMES.items():
        if outcome in (StoreOutcome.STORED, StoreOutcome.DUPLICATE):
            assert (codes.dimse_status, codes.failure_reason, codes.http_status) == (0x0000, None, 200)
        else:  # PS3.18 10.5.3 takes the PS3.4 status as FailureReason
            assert codes.failure_reason == codes.dimse_status and codes.http_status >= 400 and codes.text


@pytest.mark.parametrize(("error", "expected"), [
    (StudyMismatch("x"), StoreOutcome.STUDY_MISMATCH),  # a subclass of InvalidInstance: checked first
    (InvalidInstance("x"), StoreOutcome.CANNOT_UNDERSTAND),
    (OSError(28, "No space left on device"), StoreOutcome.OUT_OF_RESOURCES),
    (RuntimeError("x"), StoreOutcome.PROCESSING_FAILURE),
])
def test_classify_errors(error, expected):
    assert classify(error) is expected


def test_classify_results():
    assert classify(outcome=Outcome.STORED) is StoreOutcome.STORED
    assert classify(outcome=Outcome.DUPLICATE) is StoreOutcome.DUPLICATE


def test_an_upload_the_disk_cannot_take_reports_the_tables_text(archive, monkeypatch):
    from tests.factories import make_instance

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(archive, "store_bytes", full)
    report = ingest(archive, {"a.dcm": make_instance()}, "dashboard:t", 2**20)
    [only] = report.files
    assert only.outcome == FAILED and only.reason == OUTCOMES[StoreOutcome.OUT_OF_RESOURCES].text
