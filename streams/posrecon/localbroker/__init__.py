"""A local single-node Apache Kafka broker (KRaft, combined broker + controller) for development and tests.

Not part of the product: production code finds Kafka through :func:`posrecon.config.default_bootstrap` and never
imports this package. The broker jars come from Maven Central through ``deploy/kafka/pom.xml``
(``mvn dependency:copy-dependencies``) into ``<cache>/kafka-<version>/libs``, once (:mod:`.maven`). The cache dir
is ``$POSRECON_CACHE_DIR`` or ``<repo>/.cache``; ``$POSRECON_KAFKA_POM`` points at another pom.

Python API: :class:`LocalBroker` (``start``/``stop``/``kill``/``restart``/``status``, :mod:`.process`), used by the
test fixtures, the chaos suite, the demo and the benchmark. CLI: ``posrecon broker up|down|status`` (:mod:`.cli`);
it records the running broker in ``<cache>/broker-state.json`` (:mod:`.state`).
"""

from __future__ import annotations

from posrecon.config import DEFAULT_BOOTSTRAP, DEFAULT_KAFKA_PORT
from posrecon.localbroker.cli import register
from posrecon.localbroker.errors import BrokerError
from posrecon.localbroker.maven import KAFKA_VERSION, ensure_kafka_libs, require_java
from posrecon.localbroker.process import BrokerStatus, LocalBroker
from posrecon.localbroker.server_config import HOST, new_cluster_id, render_log4j_properties, render_server_properties
from posrecon.net import find_free_port, port_is_free, port_is_open

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_KAFKA_PORT",
    "HOST",
    "KAFKA_VERSION",
    "BrokerError",
    "BrokerStatus",
    "LocalBroker",
    "ensure_kafka_libs",
    "find_free_port",
    "new_cluster_id",
    "port_is_free",
    "port_is_open",
    "register",
    "render_log4j_properties",
    "render_server_properties",
    "require_java",
]
