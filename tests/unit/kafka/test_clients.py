"""The worker's transactional producer configuration."""

from __future__ import annotations

from confluent_kafka import Producer

from posrecon.kafka.clients import producer_config


def test_a_transaction_retries_concurrent_transactions_after_20_ms_not_librdkafkas_100() -> None:
    config = producer_config({"bootstrap.servers": "127.0.0.1:9"}, "app-w0", 60_000)
    assert config["retry.backoff.ms"] == 20
    assert (config["transactional.id"], config["transaction.timeout.ms"]) == ("app-w0", 60_000)
    Producer(config).flush(0)  # librdkafka accepts the whole configuration


def test_the_settings_kafka_section_overrides_the_default_backoff() -> None:
    config = producer_config({"bootstrap.servers": "127.0.0.1:9", "retry.backoff.ms": "250"}, "app-w0", 60_000)
    assert config["retry.backoff.ms"] == "250"


def test_what_exactly_once_needs_cannot_be_overridden() -> None:
    config = producer_config({"bootstrap.servers": "127.0.0.1:9", "transactional.id": "other"}, "app-w0", 60_000)
    assert config["transactional.id"] == "app-w0"
