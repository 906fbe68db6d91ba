"""The pure decisions: study completion, retry policy, state transitions, identities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.config import ConfigError, load_settings
from gateway.pipeline import keys
from gateway.pipeline.backoff import Backoff
from gateway.pipeline.completion import DEADLINE, QUIET, completion_due, is_pending
from gateway.pipeline.states import (
    DeliveryStatus,
    JobFailure,
    JobStatus,
    StoreOutcome,
    acknowledged,
    after_delivery_attempt,
    after_job_failure,
    job_retry_delay,
    lost_too_often,
    store_outcome,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_study_is_complete_after_the_quiet_period() -> None:
    assert completion_due(at(0), at(0), at(9.9), 10, 600) is None
    assert completion_due(at(0), at(0), at(10), 10, 600) == QUIET


def test_the_deadline_completes_a_study_that_keeps_trickling_in() -> None:
    # an instance every 5 s never leaves 10 s of quiet; the deadline counts from the first one
    assert completion_due(at(595), at(0), at(599), 10, 600) is None
    assert completion_due(at(598), at(0), at(600), 10, 600) == DEADLINE


def test_pending_means_never_completed_re_opened_or_holding_unseen_instances() -> None:
    assert is_pending(at(0), None)
    assert not is_pending(at(5), at(5))
    assert is_pending(at(6), at(5))  # a later instance re-opened it
    assert not is_pending(at(5), at(5), "a", "a")
    assert is_pending(at(5), at(5), "b", "a")  # stamped early, committed after the completion


def test_backoff_is_exponential_capped_and_jitter_only_shortens() -> None:
    backoff = Backoff(base=10, factor=2, max_delay=100, jitter=0.2, max_attempts=5)
    assert [backoff.delay(n, lambda: 0.0) for n in (1, 2, 3, 4, 5, 6)] == [10, 20, 40, 80, 100, 100]
    assert backoff.delay(3, lambda: 1.0) == pytest.approx(32.0)
    assert backoff.delay(10_000, lambda: 0.0) == 100  # no overflow
    assert not backoff.exhausted(4) and backoff.exhausted(5)
    with pytest.raises(ValueError, match="attempt must be 1 or more"):
        backoff.delay(0)


def test_backoff_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="max_delay_seconds must be at least base_delay_seconds"):
        load_settings(overrides={"delivery": {"base_delay_seconds": 10, "max_delay_seconds": 5}}, environ={})
    with pytest.raises(ConfigError, match="heartbeat_seconds must be at most half of lease_seconds"):
        load_settings(overrides={"worker": {"lease_seconds": 10, "heartbeat_seconds": 6}}, environ={})
    with pytest.raises(ConfigError, match="max_wait_seconds must be at least quiet_seconds"):
        load_settings(overrides={"completion": {"quiet_seconds": 10, "max_wait_seconds": 5}}, environ={})
    with pytest.raises(ConfigError, match="fake:seconds=2"):
        load_settings(overrides={"model": {"path": "fake:slow"}}, environ={})


def test_job_failures_retry_until_the_last_attempt_and_permanent_ones_fail_at_once() -> None:
    transient = JobFailure("model error: out of memory")
    assert after_job_failure(transient, attempts=1, max_attempts=3) == JobStatus.QUEUED
    assert after_job_failure(transient, attempts=3, max_attempts=3) == JobStatus.FAILED
    assert after_job_failure(JobFailure("cannot encode", permanent=True), 1, 3) == JobStatus.FAILED
    assert not lost_too_often(3, 3) and lost_too_often(4, 3)
    assert [job_retry_delay(30, n) for n in (1, 2, 3)] == [30, 60, 120]
    assert job_retry_delay(30, 100) == 3600 and job_retry_delay(0, 5) == 0


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (0x0000, StoreOutcome.SUCCESS),
        (0xB000, StoreOutcome.WARNING),
        (0xB007, StoreOutcome.WARNING),
        (0x0107, StoreOutcome.WARNING),
        (0xA700, StoreOutcome.FAILURE),
        (0xA900, StoreOutcome.FAILURE),
        (0xC000, StoreOutcome.FAILURE),
        (0x0122, StoreOutcome.FAILURE),
    ],
)
def test_c_store_statuses(status: int, outcome: StoreOutcome) -> None:
    assert store_outcome(status) is outcome
    assert acknowledged(status) is (outcome is not StoreOutcome.FAILURE)


def test_a_delivery_succeeds_only_when_every_output_is_acknowledged() -> None:
    assert after_delivery_attempt(True, 1, 3, 10).status == DeliveryStatus.DELIVERED
    verdict = after_delivery_attempt(False, 1, 3, 10)
    assert (verdict.status, verdict.retry_in_seconds) == (DeliveryStatus.PENDING, 10)
    assert after_delivery_attempt(False, 3, 3, 10).status == DeliveryStatus.DEAD


def test_the_idempotency_key_covers_study_instance_set_and_model() -> None:
    pairs = [("1.2", "aa"), ("1.3", "bb")]
    key = keys.idempotency_key("1.1", pairs, "fake|torch")
    assert key == keys.idempotency_key("1.1", list(reversed(pairs)), "fake|torch")  # a set: order-free
    assert key != keys.idempotency_key("1.9", pairs, "fake|torch")
    assert key != keys.idempotency_key("1.1", [("1.2", "aa"), ("1.3", "cc")], "fake|torch")  # a replaced copy
    assert key != keys.idempotency_key("1.1", pairs, "other|torch")
    assert key != keys.idempotency_key("1.1", pairs, "fake|torch", nonce="n1")  # gazex reprocess
    assert keys.analysis_id(key) == key[:16] and len(keys.analysis_id(key)) <= 40


def test_an_input_error_fails_at_once_names_the_image_and_a_model_error_is_retried() -> None:
    from gateway.pipeline.worker import analysis_failure
    from inference import InferenceError, InputImageError, PixelDataError

    failure = analysis_failure(InputImageError("the pixel data cannot be decoded", "1.2.3.4"))
    assert failure == JobFailure("input error: SOP instance 1.2.3.4: the pixel data cannot be decoded", permanent=True)
    assert after_job_failure(failure, attempts=1, max_attempts=3) == JobStatus.FAILED
    # the pixel decoder's errors are input errors; a UID already in the message is not repeated,
    # and a message on several lines is recorded on one
    decoded = analysis_failure(PixelDataError("SOP instance 1.2.3.4: cannot decode:\n  plugin: garbage", "1.2.3.4"))
    assert decoded == JobFailure("input error: SOP instance 1.2.3.4: cannot decode: plugin: garbage", permanent=True)
    model = analysis_failure(InferenceError("CUDA out of memory"))
    assert model == JobFailure("model error: CUDA out of memory", permanent=False)
    assert after_job_failure(model, attempts=1, max_attempts=3) == JobStatus.QUEUED
