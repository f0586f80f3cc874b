"""The contract's topics: create them (idempotently) and check that the two input topics are co-partitioned.

Co-partitioning matters because one worker must own both the terminal-event and the settlement-notice
partition of an order: both input topics need the same partition count (and the same key partitioner).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

# defined here; confluent_kafka.admin re-exports them only implicitly (mypy --strict rejects that)
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from posrecon.config import Topics, load_settings

__all__ = [
    "COMPACTED_CONFIG",
    "DEFAULT_PARTITIONS",
    "CoPartitioningError",
    "TopicError",
    "admin_client",
    "check_copartitioned",
    "create_topics",
    "describe_topics",
    "register",
    "topic_configs",
]

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 12
COMPACTED_CONFIG: Mapping[str, str] = {"cleanup.policy": "compact"}


class TopicError(RuntimeError):
    """A topic could not be created or inspected."""


class CoPartitioningError(TopicError):
    """The terminal and settlement topics are missing or have different partition counts."""


def admin_client(bootstrap: str, client_config: Mapping[str, str] | None = None) -> AdminClient:
    """An AdminClient for ``bootstrap``; ``client_config`` adds librdkafka settings (security, timeouts …)."""
    conf: dict[str, Any] = {"log_level": 4}  # no librdkafka info chatter on exit
    # not a shared config's logger (kafka/clients.py): an AdminClient serves its log queue only on poll(), which
    # nothing calls, so its messages would be kept unread; it keeps librdkafka's stderr lines instead
    conf.update({k: v for k, v in (client_config or {}).items() if k != "logger"})
    conf["bootstrap.servers"] = bootstrap
    return AdminClient(conf)


def topic_configs(topics: Topics) -> dict[str, dict[str, str]]:
    """Topic-level configs per contract topic: ``pos.reconciled`` is compacted (latest revision wins)."""
    return {
        topics.terminal: {},
        topics.settlement: {},
        topics.reconciled: dict(COMPACTED_CONFIG),
        topics.alerts: {},
        topics.deadletter: {},
        topics.batches: {},
        topics.batch_reconciled: dict(COMPACTED_CONFIG),
        topics.exception_actions: {},
        topics.exceptions: dict(COMPACTED_CONFIG),
    }


def _partition_counts(admin: AdminClient, names: list[str], timeout: float) -> dict[str, int | None]:
    """Partition count per topic name (``None`` when the topic does not exist)."""
    metadata = admin.list_topics(timeout=timeout)
    counts: dict[str, int | None] = {}
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            counts[name] = None
        else:
            counts[name] = len(topic.partitions)
    return counts


def check_copartitioned(admin_or_bootstrap: AdminClient | str, topics: Topics, timeout: float = 10.0) -> int:
    """The input topics' common partition count; :class:`CoPartitioningError` if missing or different."""
    admin = admin_client(admin_or_bootstrap) if isinstance(admin_or_bootstrap, str) else admin_or_bootstrap
    try:
        counts = _partition_counts(admin, [topics.terminal, topics.settlement], timeout)
    except KafkaException as exc:
        raise TopicError(f"cannot read topic metadata from Kafka: {exc}") from exc
    missing = [name for name, count in counts.items() if count is None]
    if missing:
        raise CoPartitioningError(
            f"input topic(s) {', '.join(missing)} do not exist; create them with `posrecon topics create`"
        )
    terminal, settlement = counts[topics.terminal], counts[topics.settlement]
    assert terminal is not None and settlement is not None
    if terminal != settlement:
        raise CoPartitioningError(
            f"input topics are not co-partitioned: {topics.terminal} has {terminal} partitions but "
            f"{topics.settlement} has {settlement}; an order's events would be split between workers. "
            "Give both topics the same partition count (add partitions to the smaller one only when it "
            "is empty, since adding partitions moves keys)."
        )
    return terminal


def create_topics(
    bootstrap: str,
    topics: Topics,
    partitions: int = DEFAULT_PARTITIONS,
    extra_config: Mapping[str, str] | None = None,
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> None:
    """Create the contract's topics with ``partitions`` partitions each; idempotent.

    ``extra_config`` holds extra librdkafka client settings for the AdminClient (e.g. ``Settings.kafka``:
    security protocol, SASL …). ``pos.reconciled`` gets ``cleanup.policy=compact``.
    Topics that already exist are left as they are (a warning is logged if their partition count
    differs from ``partitions``), but :class:`CoPartitioningError` is raised when the two input
    topics end up with different partition counts.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if replication_factor < 1:
        raise ValueError(f"replication_factor must be >= 1, got {replication_factor}")
    admin = admin_client(bootstrap, extra_config)
    configs = topic_configs(topics)
    new_topics = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=config)
        for name, config in configs.items()
    ]
    futures = admin.create_topics(new_topics, operation_timeout=timeout, request_timeout=timeout)
    existing: list[str] = []
    for name, future in futures.items():
        try:
            future.result()
            log.info("created topic %s (%d partitions)", name, partitions)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                existing.append(name)
                continue
            raise TopicError(f"could not create topic {name}: {exc}") from exc

    names = list(configs)
    counts = _wait_for_topics(admin, names, timeout)
    for name in existing:
        if counts[name] != partitions:
            log.warning("topic %s already exists with %s partitions (asked for %d)", name, counts[name], partitions)
    if topics.reconciled in existing:
        _warn_if_not_compacted(admin, topics.reconciled, timeout)
    check_copartitioned(admin, topics, timeout)


def _wait_for_topics(admin: AdminClient, names: list[str], timeout: float) -> dict[str, int | None]:
    """Wait until every topic shows up in metadata with all partition leaders elected."""
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        counts: dict[str, int | None] = {}
        ready = True
        for name in names:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                counts[name] = None
                ready = False
                continue
            counts[name] = len(topic.partitions)
            if any(p.leader < 0 for p in topic.partitions.values()):
                ready = False
        if ready:
            return counts
        if time.monotonic() >= deadline:
            missing = [name for name, count in counts.items() if count is None]
            raise TopicError(f"topics not ready after {timeout:.0f} s (missing: {', '.join(missing) or 'none'})")
        time.sleep(0.1)


def _warn_if_not_compacted(admin: AdminClient, name: str, timeout: float) -> None:
    policy = describe_configs(admin, [name], timeout).get(name, {}).get("cleanup.policy", "")
    if "compact" not in policy:
        log.warning("topic %s exists with cleanup.policy=%s; the contract wants it compacted", name, policy)


def describe_configs(admin: AdminClient, names: list[str], timeout: float = 10.0) -> dict[str, dict[str, str]]:
    """Effective topic configs (name -> key -> value) of existing topics."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    futures = admin.describe_configs(resources, request_timeout=timeout)
    result: dict[str, dict[str, str]] = {}
    for resource, future in futures.items():
        try:
            entries = future.result()
        except KafkaException as exc:
            raise TopicError(f"could not describe topic {resource.name}: {exc}") from exc
        result[resource.name] = {key: str(entry.value) for key, entry in entries.items()}
    return result


def describe_topics(
    admin: AdminClient, timeout: float = 10.0, *, include_internal: bool = False
) -> list[tuple[str, int, int, str]]:
    """(name, partitions, replication factor, cleanup.policy) per topic, sorted by name."""
    metadata = admin.list_topics(timeout=timeout)
    names = sorted(
        name
        for name, topic in metadata.topics.items()
        if topic.error is None and (include_internal or not name.startswith("__"))
    )
    configs = describe_configs(admin, names, timeout)
    rows = []
    for name in names:
        partitions = metadata.topics[name].partitions
        replicas = max((len(p.replicas) for p in partitions.values()), default=0)
        rows.append((name, len(partitions), replicas, configs.get(name, {}).get("cleanup.policy", "?")))
    return rows


# ------------------------------------------------------------------------------------------------ CLI


def _resolve(args: argparse.Namespace) -> tuple[str, Topics, dict[str, str]]:
    from posrecon.config import default_bootstrap

    settings = load_settings(args.config)
    client = dict(settings.kafka)
    bootstrap = args.bootstrap or client.pop("bootstrap.servers", None) or default_bootstrap()
    client.pop("bootstrap.servers", None)
    return bootstrap, settings.topics, client


def _reachable(bootstrap: str) -> bool:
    """True when some server of ``bootstrap`` accepts a TCP connection, and told on stderr when none does."""
    from posrecon.net import port_is_open

    for server in bootstrap.split(","):
        server = server.strip().rsplit("://", 1)[-1]
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            return True  # let librdkafka judge what it can parse
        if port_is_open(int(port), host.strip("[]"), timeout=2.0):
            return True
    print(f"error: no Kafka broker reachable at {bootstrap} (start one with `posrecon broker up`)", file=sys.stderr)
    return False


def _cmd_create(args: argparse.Namespace) -> int:
    bootstrap, topics, client = _resolve(args)
    if not _reachable(bootstrap):
        return 1
    try:
        create_topics(
            bootstrap,
            topics,
            partitions=args.partitions,
            extra_config=client,
            replication_factor=args.replication_factor,
            timeout=args.timeout,
        )
        admin = admin_client(bootstrap, client)
        rows = {row[0]: row for row in describe_topics(admin, args.timeout)}
    except (TopicError, KafkaException, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"topics on {bootstrap}:")
    for name in topic_configs(topics):
        _, partitions, replicas, policy = rows.get(name, (name, 0, 0, "?"))
        print(f"  {name:<32} partitions={partitions:<4} replication={replicas:<2} cleanup.policy={policy}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    bootstrap, topics, client = _resolve(args)
    if not _reachable(bootstrap):
        return 1
    try:
        rows = describe_topics(admin_client(bootstrap, client), args.timeout, include_internal=args.all)
    except (TopicError, KafkaException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    contract = set(topic_configs(topics))
    print(f"{'TOPIC':<36} {'PARTITIONS':>10} {'REPLICATION':>11}  CLEANUP.POLICY")
    for name, partitions, replicas, policy in rows:
        mark = " *" if name in contract else ""
        print(f"{name:<36} {partitions:>10} {replicas:>11}  {policy}{mark}")
    if contract & {row[0] for row in rows}:
        print("(* = a posrecon contract topic)")
    return 0


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (default: [kafka] bootstrap.servers of --config, "
        "$POSRECON_KAFKA_BOOTSTRAP_SERVERS, the broker from `posrecon broker up`, else 127.0.0.1:19092)",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE.toml",
        help="posrecon TOML config: topic names from [topics], client settings from [kafka]",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for Kafka (default: %(default)s)")


def register(subparsers: Any) -> None:
    """Add ``posrecon topics create|list``."""
    parser = subparsers.add_parser(
        "topics",
        help="create / list the Kafka topics of the data contract",
        description=(
            "Create or list the contract's topics: terminal events, settlement notices (the two "
            "co-partitioned inputs), reconciled (compacted), alerts and dead letters, and the exception cases' "
            "topics: operators' actions and the cases (compacted; `posrecon cases`)."
        ),
    )
    sub = parser.add_subparsers(dest="topics_command", metavar="ACTION")

    create = sub.add_parser(
        "create",
        help="create the contract topics (idempotent) and check co-partitioning",
        description=(
            "Create the contract topics with --partitions partitions each; pos.reconciled gets "
            "cleanup.policy=compact. Existing topics are kept. Fails (exit code 1) if the two input "
            "topics end up with different partition counts."
        ),
    )
    create.add_argument(
        "--partitions",
        type=int,
        default=DEFAULT_PARTITIONS,
        help="partitions per topic (default: %(default)s); both input topics must have the same count",
    )
    create.add_argument(
        "--replication-factor",
        type=int,
        default=1,
        help="replication factor (default: %(default)s, right for the single local broker)",
    )
    _common_args(create)
    create.set_defaults(func=_cmd_create)

    listing = sub.add_parser(
        "list",
        help="list topics with partition count, replication and cleanup policy",
        description="List the broker's topics (contract topics marked with *).",
    )
    listing.add_argument("--all", action="store_true", help="include internal topics (__consumer_offsets …)")
    _common_args(listing)
    listing.set_defaults(func=_cmd_list)

    def _usage(_: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_usage)
