"""Fixtures for tests against a real Kafka broker.

* ``broker`` (session): a :class:`LocalBroker` started once per test session in a temporary dir on free
  loopback ports, stopped at the end. Chaos tests may ``kill()``/``restart()`` it (same ports, same data).
* ``bootstrap``: its ``127.0.0.1:PORT`` address.
* ``fresh_topics``: a factory for a uniquely named set of the contract's topics, so tests never collide.

Tests that use these fixtures are marked ``broker`` automatically (deselect with ``-m "not broker"``).
Without Java (or, on first use, Maven) they are skipped with the reason, unless
``POSRECON_REQUIRE_BROKER=1`` turns that into an error (CI).
"""

from __future__ import annotations

import atexit
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from posrecon.config import Topics
from posrecon.kafka.topics import create_topics
from posrecon.localbroker import BrokerError, LocalBroker, ensure_kafka_libs, require_java

_BROKER_FIXTURES = {"broker", "bootstrap", "fresh_topics"}

FreshTopics = Callable[..., Topics]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


def require_local_broker() -> None:
    """Java and the Kafka jars are there, else skip the test (fail it under POSRECON_REQUIRE_BROKER=1)."""
    try:
        require_java()
        ensure_kafka_libs()
    except BrokerError as exc:
        if os.environ.get("POSRECON_REQUIRE_BROKER") == "1":
            pytest.fail(f"local Kafka broker unavailable: {exc}")
        pytest.skip(f"local Kafka broker unavailable: {exc}")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One local KRaft broker for the whole session (free ports, temp data dir)."""
    require_local_broker()
    data_dir: Path = tmp_path_factory.mktemp("kafka-broker")
    instance = LocalBroker(data_dir)
    atexit.register(instance.kill)  # safety net if the session dies without running teardown
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def bootstrap(broker: LocalBroker) -> str:
    """``127.0.0.1:PORT`` of the session broker."""
    return broker.bootstrap


def unique_topics(suffix: str | None = None) -> Topics:
    """The contract's topic names with a unique suffix, e.g. ``pos.reconciled.t1a2b3c4d5``."""
    tag = suffix or f"t{uuid.uuid4().hex[:10]}"
    base = Topics()
    return Topics(
        terminal=f"{base.terminal}.{tag}",
        settlement=f"{base.settlement}.{tag}",
        reconciled=f"{base.reconciled}.{tag}",
        alerts=f"{base.alerts}.{tag}",
        deadletter=f"{base.deadletter}.{tag}",
        exception_actions=f"{base.exception_actions}.{tag}",
        exceptions=f"{base.exceptions}.{tag}",
        batches=f"{base.batches}.{tag}",
        batch_reconciled=f"{base.batch_reconciled}.{tag}",
    )


@pytest.fixture
def fresh_topics(bootstrap: str) -> FreshTopics:
    """Factory: ``fresh_topics(partitions=12, create=True) -> Topics`` with uniquely named topics.

    With ``create=False`` only the names are returned (for tests that create topics themselves).
    """

    def make(partitions: int = 12, *, create: bool = True) -> Topics:
        topics = unique_topics()
        if create:
            create_topics(bootstrap, topics, partitions=partitions)
        return topics

    return make
