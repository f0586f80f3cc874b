"""The live pipeline over SASL_SSL (SCRAM-SHA-512 over TLS), with every client setting from the environment.

A dedicated broker gets an extra SASL_SSL listener with certificates made here (openssl) and a SCRAM user
created at storage format time. The feeder, the topic admin and the verifier get the same settings as the
worker; the worker gets them only through ``POSRECON_KAFKA_*`` env vars (``POSRECON_KAFKA_SASL_USERNAME``
becomes librdkafka's ``sasl.username``, and so on) and only the SASL_SSL address as ``--bootstrap``.
Checks: a wrong password is refused; outputs == replay oracle, exactly once; the password appears nowhere
in the worker's log.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chaoskit import app_of, check_exactly_once, create_topics_kept, precreate_internal_topics, simulate
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from saslkit import SaslBroker, make_certificates

from conftest import unique_topics, warm
from livekit import WorkerProcess, replay_oracle
from posrecon.config import load_settings
from posrecon.kafka.feeder import Feeder
from posrecon.localbroker import BrokerError, ensure_kafka_libs, require_java

pytestmark = [pytest.mark.chaos, pytest.mark.broker]
PARTITIONS = 2


@pytest.fixture
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    try:
        require_java()
        ensure_kafka_libs()
        tls = make_certificates(tmp_path_factory.mktemp("tls"))
    except BrokerError as exc:
        if os.environ.get("POSRECON_REQUIRE_BROKER") == "1":
            pytest.fail(f"SASL_SSL broker unavailable: {exc}")
        pytest.skip(f"SASL_SSL broker unavailable: {exc}")
    instance = SaslBroker(tmp_path_factory.mktemp("sasl-broker"), tls, "posrecon", secrets.token_urlsafe(18))
    instance.start()
    try:
        yield instance
    finally:
        instance.kill()


def test_worker_and_feeder_over_sasl_ssl(
    sasl_broker: SaslBroker, spawn: Callable[..., WorkerProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = sasl_broker.sasl_bootstrap
    password = sasl_broker.password
    monkeypatch.setenv("POSRECON_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("POSRECON_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("POSRECON_KAFKA_SASL_USERNAME", sasl_broker.username)
    monkeypatch.setenv("POSRECON_KAFKA_SASL_PASSWORD", password)
    monkeypatch.setenv("POSRECON_KAFKA_SSL_CA_LOCATION", str(sasl_broker.tls.ca_pem))
    client = dict(load_settings().kafka)  # what the worker will build from the same environment
    assert client == sasl_broker.client_config(), client

    # the listener really authenticates: a wrong password is refused
    wrong = AdminClient({**sasl_broker.client_config("not-the-password"), "bootstrap.servers": bootstrap})
    with pytest.raises(KafkaException):
        wrong.list_topics(timeout=8)
    del wrong  # stop its retries

    warm(bootstrap, client)
    topics = create_topics_kept(bootstrap, unique_topics(), PARTITIONS, client)
    app = app_of(topics)
    precreate_internal_topics(bootstrap, app, PARTITIONS, client)
    src = simulate(tmp_path / "sim", 400, seed=12, partitions=PARTITIONS)
    fed = Feeder(bootstrap, topics, client).feed(src.read_text().splitlines())
    assert fed > 1000

    worker = spawn(bootstrap, topics, app, "w0")
    check = check_exactly_once(
        bootstrap,
        topics,
        app,
        replay_oracle(src, tmp_path / "replay", PARTITIONS),
        client_config=client,
        alive=worker.alive,
    )
    assert worker.stop() == 0, worker.log()[-3000:]
    assert check.ok, check.explain()
    log = worker.log()
    assert f'"bootstrap": "{bootstrap}"' in log  # it ran against the SASL_SSL listener only
    assert password not in log, "the SASL password appears in the worker log"
