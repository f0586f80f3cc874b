"""Fixtures of the chaos suite.

``broker``, ``bootstrap`` and ``fresh_topics`` are the integration tier's (tests/integration/conftest.py,
loaded by path: pytest only reads conftest files of a test's ancestor dirs). Being defined again here,
the chaos suite gets its own session broker, so killing and restarting things never disturbs the
integration tests' broker. Tests that restart a broker start a dedicated one (``own_broker``).

* ``spawn(worker_id, ...)``: a ``posrecon run`` process (tests/livekit.WorkerProcess) that is killed at
  teardown if the test left it running.
* ``warm_bootstrap``: ``bootstrap`` once the broker's group coordinator answers (a fresh broker returns
  NOT_COORDINATOR for a few seconds while ``__consumer_offsets`` is created).

Every test here must be marked ``chaos``; soak tests also ``soak`` and run only with POSRECON_SOAK=1.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # chaoskit, saslkit
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))  # livekit, scenario

_spec = importlib.util.spec_from_file_location(
    "posrecon_integration_conftest", HERE.parent / "integration" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_integration)

broker = _integration.broker
bootstrap = _integration.bootstrap
fresh_topics = _integration.fresh_topics
unique_topics = _integration.unique_topics
require_local_broker = _integration.require_local_broker

from chaoskit import app_of, create_topics_kept, precreate_internal_topics, retrying, rules_file  # noqa: E402

from livekit import WorkerProcess  # noqa: E402
from posrecon.config import Topics  # noqa: E402
from posrecon.kafka.progress import group_lag  # noqa: E402
from posrecon.localbroker import LocalBroker  # noqa: E402

SOAK = os.environ.get("POSRECON_SOAK") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.broker)
        if item.get_closest_marker("chaos") is None:
            raise pytest.UsageError(f"{item.nodeid}: every test in tests/chaos must be marked chaos")
        if item.get_closest_marker("soak") is not None and not SOAK:
            item.add_marker(pytest.mark.skip(reason="soak profile: run with POSRECON_SOAK=1 (make soak)"))


@pytest.fixture
def warm_bootstrap(bootstrap: str) -> str:
    warm(bootstrap)
    return bootstrap


def warm(bootstrap: str, client_config: dict[str, str] | None = None) -> None:
    """Block until the group coordinator serves offset fetches (fresh or restarted broker)."""
    retrying(group_lag, bootstrap, "chaos-warmup", ["__consumer_offsets"], (), client_config, within=90)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def make(
        bootstrap: str,
        topics: Topics,
        app: str,
        worker_id: str,
        *,
        batch: int | None = None,
        extra: list[str] | None = None,
        log_dir: Path | None = None,
    ) -> WorkerProcess:
        args = ["--no-wall-clock-advance", *(extra or [])]
        if batch is not None:
            args += ["--batch", str(batch)]
        # the rules its input was replayed with (chaoskit.chaos_input: the simulation's merchant pricing)
        worker = WorkerProcess(bootstrap, topics, app, worker_id, log_dir or tmp_path, args, rules_file(app))
        started.append(worker)
        return worker

    yield make
    for worker in started:
        if worker.alive():
            worker.kill()


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of this test alone (free ports, temp dir), for tests that stop, kill or restart it."""
    require_local_broker()
    instance = LocalBroker(tmp_path_factory.mktemp("own-broker"))
    instance.start()
    try:
        yield instance
    finally:
        instance.kill()


def fresh(bootstrap: str, partitions: int, client_config: dict[str, str] | None = None) -> Topics:
    """Uniquely named contract topics on ``bootstrap``, time retention off (see chaoskit.create_topics_kept),
    plus the internal topics of the app ``app_of(topics)``, created ahead of the worker (see
    chaoskit.precreate_internal_topics and test_startup.py for why)."""
    topics = create_topics_kept(bootstrap, unique_topics(), partitions, client_config)
    precreate_internal_topics(bootstrap, app_of(topics), partitions, client_config)
    return topics


@pytest.fixture
def make_topics() -> Callable[..., Topics]:
    """``make_topics(bootstrap, partitions, client_config=None)``: fresh topics on any broker, kept forever
    (use this rather than ``fresh_topics``, whose default 7-day retention deletes the simulated 2026-01-01
    records once the machine clock is past 2026-01-08)."""
    return fresh
