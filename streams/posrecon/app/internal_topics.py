"""The worker's internal topics (changelogs and the card repartition topic), co-partitioned with the inputs."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

#: the config of a changelog topic (compacted, compaction may start at once)
COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "600000"}


def internal_topics(app_id: str) -> tuple[str, str, str]:
    """(order-state changelog, card sightings, card-state changelog) topic names."""
    return f"{app_id}-order-state-changelog", f"{app_id}-card-sightings", f"{app_id}-card-state-changelog"


def create_internal_topics(admin: AdminClient, app_id: str, partitions: int, replication: int = 1) -> None:
    """Create the internal topics if missing; refuse to run when an existing one has another partition count."""
    changelog, sightings, card_changelog = internal_topics(app_id)
    wanted = {
        changelog: COMPACTED,
        sightings: {"retention.ms": str(7 * 24 * 3600 * 1000)},
        card_changelog: COMPACTED,
    }
    create_topics_if_missing(admin, wanted, partitions, replication)


def create_topics_if_missing(
    admin: AdminClient, wanted: dict[str, dict[str, str]], partitions: int, replication: int = 1
) -> None:
    """Create the topics of ``wanted`` (name -> config) that are missing, with ``partitions`` partitions; refuse
    to run when an existing one has another partition count (also the case stage's changelog: posrecon.cases)."""
    metadata = admin.list_topics(timeout=10)
    missing = []
    for name, config in wanted.items():
        topic = metadata.topics.get(name)
        if topic is not None and topic.error is None:
            if len(topic.partitions) != partitions:
                raise RuntimeError(
                    f"internal topic {name} has {len(topic.partitions)} partitions but the input topics have "
                    f"{partitions}; delete it (its state is rebuilt only from itself) or use another --app-id"
                )
            continue
        missing.append(NewTopic(name, num_partitions=partitions, replication_factor=replication, config=config))
    if not missing:
        return
    for name, future in admin.create_topics(missing, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"cannot create internal topic {name}: {exc}") from exc
    _wait_for_leaders(admin, [t.topic for t in missing], partitions)


def _wait_for_leaders(admin: AdminClient, names: list[str], partitions: int, timeout_s: float = 30.0) -> None:
    """create_topics returns before the partitions have leaders; wait until every one has."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=10)
        ready = True
        for name in names:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or len(topic.partitions) != partitions:
                ready = False
                break
            if any(p.leader < 0 or p.error is not None for p in topic.partitions.values()):
                ready = False
                break
        if ready:
            return
        time.sleep(0.2)
    raise RuntimeError(f"internal topics {names} have no leaders after {timeout_s} s")
