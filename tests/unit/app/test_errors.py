"""The worker's error policy (app/errors.py): what each failure leads to."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from posrecon.app.errors import (
    BAD_SIGHTING_ROW,
    ConsumerAction,
    Letter,
    ProducerAction,
    TransactionStalled,
    bad_sighting,
    may_retry_offset_fetch,
    on_abort_failure,
    on_consumer_error,
    on_transaction_failure,
    rejected,
    undecodable,
)
from posrecon.engine.model import InvalidReason, Rejection
from posrecon.serde.codec import DecodeError


def _exc(code: int, *, fatal: bool = False, retriable: bool = False) -> KafkaException:
    return KafkaException(KafkaError(code, "x", fatal=fatal, retriable=retriable))


def test_undecodable_and_bad_sighting_records_are_dead_letters_with_decode_error() -> None:
    assert undecodable(DecodeError("truncated")) == Letter("DECODE_ERROR", "truncated", "DecodeError")
    assert bad_sighting(IndexError("tuple index")) == Letter(
        "DECODE_ERROR", "bad card sighting: tuple index", "IndexError"
    )
    assert {ValueError, IndexError, TypeError} == set(BAD_SIGHTING_ROW)


def test_a_rejected_record_is_a_dead_letter_with_the_rejection_reason() -> None:
    letter = rejected(Rejection(InvalidReason.CLOCK_SKEW, "2 h ahead"))
    assert letter == Letter("CLOCK_SKEW", "2 h ahead", "InvalidRecord")


@pytest.mark.parametrize(
    ("code", "fatal", "action"),
    [
        (KafkaError._PARTITION_EOF, False, ConsumerAction.END_OF_PARTITION),
        (KafkaError._AUTO_OFFSET_RESET, False, ConsumerAction.RECORDS_LOST),
        (KafkaError._FENCED, True, ConsumerAction.STOP),
        (KafkaError._TRANSPORT, False, ConsumerAction.LOG),
    ],
)
def test_consumer_errors(code: int, fatal: bool, action: ConsumerAction) -> None:
    assert on_consumer_error(KafkaError(code, "x", fatal=fatal)) is action


def test_a_failed_transaction_is_aborted_unless_fatal_or_stalled() -> None:
    assert on_transaction_failure(_exc(KafkaError._TIMED_OUT, retriable=True)).action is ProducerAction.ABORT
    assert on_transaction_failure(_exc(KafkaError._STATE)).action is ProducerAction.ABORT
    fatal = on_transaction_failure(_exc(KafkaError._FENCED, fatal=True))
    assert fatal.action is ProducerAction.REPLACE and fatal.why.startswith("fatal producer error")
    stalled = on_transaction_failure(TransactionStalled("_end_transaction stalled"))
    assert stalled == (ProducerAction.REPLACE, "_end_transaction stalled")


def test_a_failed_abort_always_replaces_the_producer() -> None:
    assert on_abort_failure(_exc(KafkaError._TIMED_OUT, retriable=True)).action is ProducerAction.REPLACE
    assert on_abort_failure(_exc(KafkaError._STATE)).action is ProducerAction.REPLACE
    assert on_abort_failure(_exc(KafkaError._FENCED, fatal=True, retriable=True)).action is ProducerAction.REPLACE
    assert on_abort_failure(TransactionStalled("abort")).why == "abort_transaction stalled"
    assert on_abort_failure(KafkaException("not a KafkaError")).action is ProducerAction.REPLACE


def test_committed_offsets_are_retried_until_fatal_or_past_the_deadline() -> None:
    assert may_retry_offset_fetch(_exc(KafkaError._TIMED_OUT), past_deadline=False)
    assert not may_retry_offset_fetch(_exc(KafkaError._TIMED_OUT), past_deadline=True)
    assert not may_retry_offset_fetch(_exc(KafkaError._FENCED, fatal=True), past_deadline=False)
