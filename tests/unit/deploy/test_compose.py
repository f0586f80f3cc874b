"""deploy/compose: the production-shaped stack, loaded by a real compose implementation and checked
structurally with PyYAML.

podman-compose (dev extra; ``--dry-run config`` needs no engine) loads the file as it would run it.
`docker compose config -q` is run as well when Docker's compose plugin is available (this project's
machines have the docker CLI without the plugin: that one test skips).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from posrecon.config import load_settings

REPO = Path(__file__).resolve().parents[3]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
KAFKA_IMAGE = "apache/kafka:3.9.1"
METRICS_PORT = 9108


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves the x-* anchors and << merges
    return doc


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def kafka_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if s.get("image") == KAFKA_IMAGE}


def workers() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if s.get("command", [None])[0] == "run"}


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def bind_sources(service: dict[str, Any]) -> list[Path]:
    paths = []
    for volume in service.get("volumes", []):
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith((".", "/")):
            paths.append((COMPOSE_DIR / source).resolve())
    return paths


def compose_implementation() -> list[str]:
    """podman-compose (dev extra) loads a compose file without an engine (``--dry-run``)."""
    tool = shutil.which("podman-compose") or str(Path(sys.executable).with_name("podman-compose"))
    assert Path(tool).exists(), "podman-compose is in the dev extra: pip install -e '.[dev]' (make install)"
    return [tool, "--dry-run"]


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_implementation(), "-f", str(path), "config"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=path.parent,
    )


def test_a_compose_implementation_loads_the_stack() -> None:
    """A real compose implementation resolves the file (anchors, merges, ${VAR:-default}) as it would run it."""
    result = compose_config(COMPOSE)
    assert result.returncode == 0, result.stderr
    loaded = yaml.safe_load(result.stdout)
    assert loaded["name"] == "posrecon" and set(workers()) <= set(loaded["services"])
    for name in workers():
        environment = loaded["services"][name]["environment"]
        # the ports must be reachable from Prometheus and the healthcheck: not the 127.0.0.1 default
        assert environment["POSRECON_LISTEN"] == "0.0.0.0" and environment["POSRECON_HEALTH_PORT"] == "8080"
    assert loaded["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "admin"


def test_the_compose_implementation_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  w0:\n    image: x\n    extends: {service: missing}\n")
    assert compose_config(broken).returncode != 0


def test_docker_compose_config() -> None:
    """Docker's own implementation too, where its plugin is installed (it needs no daemon for `config`)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip("docker compose plugin not installed; podman-compose loaded the file above")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_top_level() -> None:
    doc = compose()
    assert doc["name"] == "posrecon"
    assert "version" not in doc  # obsolete in the Compose Specification
    named = {
        v.split(":", 1)[0]
        for s in doc["services"].values()
        for v in s.get("volumes", [])
        if isinstance(v, str) and not v.startswith((".", "/"))
    }
    assert named <= set(doc["volumes"])
    assert {"topic-init", "prometheus", "alertmanager", "grafana"} <= set(doc["services"])
    for name, service in doc["services"].items():
        assert "image" in service or "build" in service, name
        for dep in service.get("depends_on", {}):
            assert dep in doc["services"], f"{name} depends on unknown {dep}"


def test_kafka_cluster_three_kraft_brokers() -> None:
    brokers = kafka_services()
    assert len(brokers) == 3
    node_ids = set()
    voters = set()
    cluster_ids = set()
    for name, service in brokers.items():
        e = env(service)
        node_ids.add(e["KAFKA_NODE_ID"])
        voters.add(e["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        cluster_ids.add(e["CLUSTER_ID"])
        assert set(e["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        assert f"PLAINTEXT://{name}:" in e["KAFKA_ADVERTISED_LISTENERS"]
        assert e["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert e["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert e["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert e["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert e["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert "healthcheck" in service
        assert any(v.endswith(":" + e["KAFKA_LOG_DIRS"]) for v in service["volumes"]), "log dir not on a volume"
    assert node_ids == {"1", "2", "3"}
    assert len(voters) == 1 and len(cluster_ids) == 1
    quorum = {v.split("@")[0]: v.split("@")[1].split(":")[0] for v in voters.pop().split(",")}
    assert set(quorum.values()) == set(brokers)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_ids.pop())  # base64url of a UUID


def test_topic_init_creates_replicated_topics() -> None:
    init = services()["topic-init"]
    script = " ".join(init["entrypoint"]) + " " + " ".join(init["command"])
    assert "posrecon topics create" in script
    assert "--replication-factor 3" in script and "--partitions 12" in script
    assert "create_internal_topics(" in script  # the worker would create them with RF 1
    assert init.get("restart") == "no"
    assert set(init["depends_on"]) == set(kafka_services())
    assert all(d["condition"] == "service_healthy" for d in init["depends_on"].values())


def test_workers() -> None:
    ws = workers()
    assert len(ws) >= 2
    ids = {env(w)["POSRECON_WORKER_ID"] for w in ws.values()}
    assert len(ids) == len(ws), "worker ids (transactional.id) must be distinct"
    for w in ws.values():
        args = w["command"]
        assert args[args.index("--worker-id") + 1] == env(w)["POSRECON_WORKER_ID"]
        assert args[args.index("--metrics-port") + 1] == str(METRICS_PORT)
        assert w["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
        assert "readyz" in " ".join(w["healthcheck"]["test"])
        assert w["build"]["dockerfile"] == "deploy/compose/Dockerfile"
        assert (COMPOSE_DIR / w["build"]["context"]).resolve() == REPO


def test_worker_config_loads(tmp_path: Path) -> None:
    w = next(iter(workers().values()))
    args = w["command"]
    config_in_container = args[args.index("--config") + 1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in w["volumes"]}
    source = COMPOSE_DIR / mounts[config_in_container]
    tomllib.loads(source.read_text())
    settings = load_settings(source, env=env(w))
    brokers = {f"{name}:19092" for name in kafka_services()}
    assert set(settings.kafka["bootstrap.servers"].split(",")) == brokers


def test_bind_mounts_exist() -> None:
    for name, service in services().items():
        for path in bind_sources(service):
            assert path.exists(), f"{name}: {path} does not exist"


def test_prometheus_scrapes_every_worker_and_loads_the_rules() -> None:
    prom = services()["prometheus"]
    mounts = {v.split(":")[1]: (COMPOSE_DIR / v.split(":")[0]).resolve() for v in prom["volumes"] if v.startswith(".")}
    config_file = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    config = yaml.safe_load(mounts[config_file].read_text())
    rule_dir = Path(config_file).parent
    for rule_file in config["rule_files"]:
        assert str(rule_dir / rule_file) in mounts, f"{rule_file} not mounted"
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "posrecon-worker")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:{METRICS_PORT}" for name in workers()}
    am_targets = {t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]}
    assert am_targets == {"alertmanager:9093"}
    alertmanager = services()["alertmanager"]
    am_config = next(a.split("=", 1)[1] for a in alertmanager["command"] if a.startswith("--config.file="))
    assert any(v.endswith(":" + am_config + ":ro") for v in alertmanager["volumes"])


def test_grafana_provisioning_mounted() -> None:
    grafana = services()["grafana"]
    mounts = {
        v.split(":")[1]: (COMPOSE_DIR / v.split(":")[0]).resolve() for v in grafana["volumes"] if v.startswith(".")
    }
    provisioning = mounts["/etc/grafana/provisioning"]
    assert (provisioning / "datasources").is_dir() and (provisioning / "dashboards").is_dir()
    provider = yaml.safe_load((provisioning / "dashboards" / "posrecon.yaml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert (mounts[dashboards_path] / "posrecon.json").exists()
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_dockerfile() -> None:
    text = (COMPOSE_DIR / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.MULTILINE)
    # the wheel is built (engine compiled, a failed compile failing the build) in a stage with a C compiler
    assert re.search(r"^FROM python:3\.11 AS wheel\s*$", text, re.MULTILINE)
    assert re.search(r"^RUN POSRECON_PURE=0 pip wheel .* -w /wheels \.\s*$", text, re.MULTILINE)
    assert re.search(r"^COPY --from=wheel /wheels /wheels\s*$", text, re.MULTILINE)
    assert re.search(r"^RUN pip install /wheels/\*\.whl", text, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["posrecon"\]\s*$', text, re.MULTILINE)
    assert "POSRECON_SCHEMA_DIR" in text  # schemas/ is not package data
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for path in src.split():
            assert (REPO / path).exists(), path
