"""The worker's transactional producer configuration."""

from __future__ import annotations

import json
import logging
import time

import pytest
from confluent_kafka import Producer

from posrecon.kafka.clients import KAFKA_LOG, group_consumer, producer_config, shared_config
from posrecon.logs import JsonFormatter
from posrecon.net import find_free_port


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


def test_librdkafka_log_lines_reach_the_json_log_not_raw_stderr(caplog: pytest.LogCaptureFixture) -> None:
    # a real librdkafka consumer pointed at a closed port: its connection errors are served by consume()
    config = shared_config({}, {}, f"127.0.0.1:{find_free_port()}")
    consumer = group_consumer(config, "posrecon-log-test", None)
    try:
        with caplog.at_level(logging.WARNING, logger=KAFKA_LOG.name):
            consumer.subscribe(["posrecon-log-test"])
            deadline = time.monotonic() + 20
            while not any("Connect to" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
                consumer.consume(10, 0.2)
    finally:
        consumer.close()
    lines = [r for r in caplog.records if r.name == KAFKA_LOG.name and "Connect to" in r.getMessage()]
    assert lines and lines[0].levelno == logging.ERROR
    formatted = JsonFormatter().format(lines[0])
    assert json.loads(formatted)["logger"] == "posrecon.kafka.librdkafka"
