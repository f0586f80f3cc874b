"""The worker's error policy, in one place: what each kind of failure leads to.

* **A record that cannot be decoded** (an input record the Avro codec rejects, a card-sightings row that does
  not unpack): a dead letter with reason ``DECODE_ERROR``; the batch goes on.
* **A record the engine rejects** (validation: empty id, bad amount, clock skew …): a dead letter with the
  rejection's reason (and the engine's INVALID_EVENT alert); the batch goes on.
* **Any other exception while processing** is a bug, not data: it is not caught. The batch's transaction has
  not begun, so nothing of it is committed; the process exits and a restart resumes at the committed offsets.
* **A consumer error**: end of partition is information; an offset out of range means input records were
  lost (reported loudly, see ``Positions.records_lost``); a fatal error stops the worker; anything else is
  logged and librdkafka retries.
* **A transaction that fails** (begin, produce, send offsets or commit raised): the prepared batch is dropped,
  the producer aborts what it can and is then **always replaced**: a new one with the same
  ``transactional.id`` runs ``init_transactions``, which fences the old one and settles, on the coordinator,
  whatever transaction it left (an ongoing one is aborted, one whose commit was already accepted is completed)
  before it returns. Only then is the state rebuilt from the changelogs and the input rewound to the committed
  offsets, so the rebuild reads a settled log. ``abort_transaction`` alone is not enough: it can end the
  transaction in the client only (it returns at once when librdkafka believes no partition was added; a
  retriable failure leaves it to the broker's timeout), and a rebuild that reads the offsets while that
  transaction is still open on the broker, and the changelog after it settled, restores a state ahead of its
  offsets (defect 12 in docs/guarantees.md). A fatal producer error (fenced, or the coordinator already
  aborted) or a stalled call (librdkafka can hang after a broker restart) skips the abort.
* **Fetching the committed offsets** (restore) is retried while the coordinator is unavailable, up to a
  deadline; a fatal error is raised.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from confluent_kafka import KafkaError, KafkaException

from posrecon.engine.model import InvalidReason, Rejection
from posrecon.serde.codec import DecodeError

#: what unpacking a card-sightings row raises when the row is not one (see Outbox.card_sighting)
BAD_SIGHTING_ROW = (ValueError, IndexError, TypeError)


class TransactionStalled(RuntimeError):
    """A transactional call did not return in time."""


class Letter(NamedTuple):
    """Why a record goes to the dead letters: ``DeadLetter.of``'s reason, detail and exception class."""

    reason: str
    detail: str
    exception_class: str


def undecodable(exc: DecodeError) -> Letter:
    return Letter(InvalidReason.DECODE_ERROR.value, str(exc), "DecodeError")


def bad_sighting(exc: Exception) -> Letter:
    return Letter(InvalidReason.DECODE_ERROR.value, f"bad card sighting: {exc}", type(exc).__name__)


def rejected(rejection: Rejection) -> Letter:
    return Letter(rejection.reason.value, rejection.detail, "InvalidRecord")


class ConsumerAction(Enum):
    END_OF_PARTITION = "end of partition"
    RECORDS_LOST = "records lost"
    STOP = "stop"  # raise: the worker exits
    LOG = "log"  # librdkafka retries by itself


def on_consumer_error(err: KafkaError) -> ConsumerAction:
    code = err.code()
    if code == KafkaError._PARTITION_EOF:
        return ConsumerAction.END_OF_PARTITION
    if code == KafkaError._AUTO_OFFSET_RESET:
        return ConsumerAction.RECORDS_LOST
    if err.fatal():
        return ConsumerAction.STOP
    return ConsumerAction.LOG


class ProducerAction(Enum):
    ABORT = "abort"  # abort_transaction first (the old producer can then be closed), then replace it
    REPLACE = "replace"  # replace it at once: a new producer fences the old one (init_transactions)


class Remedy(NamedTuple):
    action: ProducerAction
    why: str


def _kafka_error(exc: BaseException) -> KafkaError | None:
    arg = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return arg if isinstance(arg, KafkaError) else None


def on_transaction_failure(exc: BaseException) -> Remedy:
    """What to do with the producer after a transactional call failed with ``exc``."""
    if isinstance(exc, TransactionStalled):
        return Remedy(ProducerAction.REPLACE, str(exc))
    err = _kafka_error(exc)
    if err is not None and err.fatal():
        return Remedy(ProducerAction.REPLACE, f"fatal producer error: {err}")
    return Remedy(ProducerAction.ABORT, "")


def on_abort_failure(exc: BaseException) -> Remedy:
    """Why the producer is replaced after ``abort_transaction`` itself failed (it always is: see the module
    docstring; a producer whose abort did not return may still be inside librdkafka and is kept referenced)."""
    if isinstance(exc, TransactionStalled):
        return Remedy(ProducerAction.REPLACE, "abort_transaction stalled")
    return Remedy(ProducerAction.REPLACE, f"abort failed: {_kafka_error(exc) or exc}")


def may_retry_offset_fetch(exc: KafkaException, past_deadline: bool) -> bool:
    err = _kafka_error(exc)
    return not (err is not None and err.fatal()) and not past_deadline
