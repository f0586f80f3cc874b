"""The CLI's record of the running dev broker (``<cache>/broker-state.json``), read back by ``broker down``/``status``
and, without importing this package, by :func:`posrecon.config.default_bootstrap`."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from posrecon.config import local_broker_state_file
from posrecon.localbroker.maven import KAFKA_VERSION
from posrecon.localbroker.process import LocalBroker


def read_state(path: Path | None = None) -> dict[str, Any] | None:
    path = local_broker_state_file() if path is None else path
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(broker: LocalBroker, path: Path | None = None) -> None:
    path = local_broker_state_file() if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    state = asdict(broker.status())
    state["kafka_version"] = KAFKA_VERSION
    state["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def broker_from_state(state: dict[str, Any]) -> LocalBroker:
    port = state.get("port")
    controller_port = state.get("controller_port")
    return LocalBroker(
        state["data_dir"],
        port=int(port) if port is not None else None,
        controller_port=int(controller_port) if controller_port is not None else None,
    )


def running_local_broker() -> LocalBroker | None:
    """The broker recorded by ``posrecon broker up``, if it is still running."""
    state = read_state()
    if state is None or "data_dir" not in state:
        return None
    broker = broker_from_state(state)
    return broker if broker.is_running() else None
