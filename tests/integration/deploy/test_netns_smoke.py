"""The worker as deploy/k8s/worker-deployment.yaml starts it, in a network namespace of its own (a pod's
network), probed from outside at the namespace's address as the kubelet and Prometheus do.

Args and environment come from the Deployment and its ConfigMaps, unchanged except: the bootstrap
servers point at the test broker (through a relay pair: namespace loopback -> veth -> host loopback),
the mounted files (TOML config without its SASL/TLS lines, tokens) live in a temp dir, and the topic
names get a unique suffix. Needs root and iproute2 (make tools).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploykit import Netns, PodSpec, http_get, materialise, pod_spec, relay_command, wait_for, wait_port
from livekit import topic_env

pytestmark = pytest.mark.broker
VIEWER_TOKEN = "smoke-viewer-token"
SECRETS = {
    ("posrecon", "password"): "not-used-on-plaintext",
    ("posrecon-ops-tokens", "tokens"): f"viewer smoke {VIEWER_TOKEN}\n",
}


@pytest.fixture
def pod_network(bootstrap: str) -> Iterator[tuple[Netns, str]]:
    """A namespace whose loopback reaches the test broker at the broker's own advertised address."""
    port = int(bootstrap.rsplit(":", 1)[1])
    ns = Netns()
    relays: list[subprocess.Popen[bytes]] = []
    try:
        relays.append(subprocess.Popen(relay_command(ns.host_addr, port, "127.0.0.1", port)))
        wait_port(ns.host_addr, port)
        relays.append(subprocess.Popen(ns.command(relay_command("127.0.0.1", port, ns.host_addr, port))))
        wait_port("127.0.0.1", port, via=ns)
        yield ns, f"127.0.0.1:{port}"
    finally:
        for relay in relays:
            relay.kill()
            relay.wait(10)
        ns.close()


def start_pod(ns: Netns, spec: PodSpec, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # the image's entrypoint is `posrecon`; its args follow
    argv = ns.command([sys.executable, "-m", "posrecon.cli", *spec.args])
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(45)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def pod_env(spec: PodSpec, broker: str, topics: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSRECON_")}
    return {**env, **spec.env, "POSRECON_KAFKA_BOOTSTRAP_SERVERS": broker, **topic_env(topics)}


def test_deployment_is_probed_at_the_pod_address(
    pod_network: tuple[Netns, str], fresh_topics: Any, tmp_path: Path
) -> None:
    ns, broker = pod_network
    spec = materialise(pod_spec("posrecon-worker-smoke-0", SECRETS), tmp_path / "mounts")
    worker = start_pod(ns, spec, pod_env(spec, broker, fresh_topics(2)), tmp_path / "worker.log")
    log = tmp_path / "worker.log"
    try:
        started = time.monotonic()
        health, metrics = spec.ports["http"], spec.ports["metrics"]
        for path in ("/healthz", "/readyz"):
            wait_for(f"http://{ns.ns_addr}:{health}{path}", 120, lambda: worker.poll() is None)
        _, body = wait_for(f"http://{ns.ns_addr}:{metrics}/metrics", 30)
        assert "posrecon_worker_up 1.0" in body and "posrecon_assigned_partitions 2.0" in body
        # the rest of the ops API is there and closed to callers without a token
        assert http_get(f"http://{ns.ns_addr}:{health}/pending")[0] == 401
        print(f"\npod probes answered at {ns.ns_addr} after {time.monotonic() - started:.1f} s")
    finally:
        stop(worker)
    assert worker.returncode == 0, log.read_text()[-3000:]


def test_without_posrecon_listen_the_probes_fail(
    pod_network: tuple[Netns, str], fresh_topics: Any, tmp_path: Path
) -> None:
    """Today's defect, reproduced: the worker serves on the namespace's loopback only."""
    ns, broker = pod_network
    spec = materialise(pod_spec("posrecon-worker-smoke-1", SECRETS), tmp_path / "mounts")
    env = pod_env(spec, broker, fresh_topics(2))
    env.pop("POSRECON_LISTEN")
    worker = start_pod(ns, spec, env, tmp_path / "worker.log")
    try:
        health = spec.ports["http"]
        wait_port("127.0.0.1", health, deadline_s=60, via=ns)  # up, inside
        with pytest.raises(OSError):
            http_get(f"http://{ns.ns_addr}:{health}/healthz")  # refused at the pod address
    finally:
        stop(worker)
