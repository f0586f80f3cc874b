"""Structural checks of deploy/k8s/*.yaml (no cluster needed): required fields, labels vs selectors,
probes on declared container ports, Prometheus annotations, config and topics consistent with the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from posrecon.app.batch_stage import batch_topics
from posrecon.app.internal_topics import internal_topics
from posrecon.config import Topics, load_settings
from posrecon.kafka.topics import DEFAULT_PARTITIONS, topic_configs

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"

API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "PodDisruptionBudget": "policy/v1",
    "KafkaTopic": "kafka.strimzi.io/v1beta2",
    "KafkaUser": "kafka.strimzi.io/v1beta2",
    "PodMonitor": "monitoring.coreos.com/v1",
}
HEALTH_PORT, METRICS_PORT = 8080, 9108


def load_all() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


DOCS = load_all()


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCS if doc["kind"] == kind]


def the(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def worker() -> dict[str, Any]:
    return the("Deployment", "posrecon-worker")


def container() -> dict[str, Any]:
    containers = worker()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def port_number(port: int | str, c: dict[str, Any]) -> int:
    """A probe's port (number or the name of a container port) as a number declared by the container."""
    declared = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if isinstance(port, str):
        assert port in declared, f"probe port {port!r} is not a named container port"
        return declared[port]
    assert port in declared.values(), f"probe port {port} is not a container port"
    return port


# ------------------------------------------------------------------------------------------- generic


def test_manifests_found() -> None:
    kinds = {doc["kind"] for _, doc in DOCS}
    assert {"Deployment", "ConfigMap", "KafkaTopic", "Namespace"} <= kinds


@pytest.mark.parametrize(("source", "doc"), DOCS, ids=[f"{s}:{d['kind']}/{d['metadata']['name']}" for s, d in DOCS])
def test_required_fields(source: str, doc: dict[str, Any]) -> None:
    assert doc.get("apiVersion") == API_VERSIONS[doc["kind"]], source
    meta = doc["metadata"]
    assert meta.get("name"), source
    if doc["kind"] != "Namespace":
        assert meta.get("namespace") == "posrecon", source
    if doc["kind"] in ("ConfigMap", "Secret"):
        assert doc.get("data") or doc.get("stringData"), source
    else:
        assert "spec" in doc or doc["kind"] == "Namespace", source


def test_names_unique_per_kind() -> None:
    keys = [(doc["kind"], doc["metadata"]["name"]) for _, doc in DOCS]
    assert len(keys) == len(set(keys))


# ------------------------------------------------------------------------------------------- the worker


def test_selector_matches_pod_labels() -> None:
    spec = worker()["spec"]
    selector = spec["selector"]["matchLabels"]
    labels = spec["template"]["metadata"]["labels"]
    assert selector and all(labels.get(k) == v for k, v in selector.items())
    for kind in ("PodDisruptionBudget", "Service", "PodMonitor"):
        for doc in of_kind(kind):
            sel = doc["spec"]["selector"]
            sel = sel.get("matchLabels", sel)
            assert sel and all(labels.get(k) == v for k, v in sel.items()), f"{kind} selects no worker pod"


def test_replicas_and_partitions() -> None:
    replicas = worker()["spec"]["replicas"]
    partitions = {t["spec"]["partitions"] for t in of_kind("KafkaTopic")}
    assert partitions == {DEFAULT_PARTITIONS}
    assert 2 <= replicas <= DEFAULT_PARTITIONS, "more workers than partitions sit idle"


def test_probes() -> None:
    c = container()
    liveness, readiness = c["livenessProbe"], c["readinessProbe"]
    assert liveness["httpGet"]["path"] == "/healthz"
    assert readiness["httpGet"]["path"] == "/readyz"
    for probe in (liveness, readiness, c.get("startupProbe")):
        if probe is not None:
            assert port_number(probe["httpGet"]["port"], c) == HEALTH_PORT


def test_metrics_port_and_prometheus_annotations() -> None:
    c = container()
    annotations = worker()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == METRICS_PORT
    assert annotations["prometheus.io/path"] == "/metrics"
    assert port_number("metrics", c) == METRICS_PORT
    args = c["args"]
    assert args[0] == "run"
    assert args[args.index("--metrics-port") + 1] == str(METRICS_PORT)
    for monitor in of_kind("PodMonitor"):
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"metrics"}
    for svc in of_kind("Service"):
        declared = {p["name"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= declared


def test_resources() -> None:
    resources = container()["resources"]
    for key in ("cpu", "memory"):
        assert resources["requests"][key]
    assert resources["limits"]["memory"]


def test_environment_from_configmap_and_secret() -> None:
    c = container()
    config_maps = {doc["metadata"]["name"]: doc for doc in of_kind("ConfigMap")}
    for ref in c["envFrom"]:
        assert ref["configMapRef"]["name"] in config_maps
    env = {e["name"]: e for e in c["env"]}
    secret = env["POSRECON_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    # the Secret is generated by Strimzi for the KafkaUser of the same name (or given as a Secret)
    users = {doc["metadata"]["name"] for doc in of_kind("KafkaUser")}
    secrets = {doc["metadata"]["name"] for doc in of_kind("Secret")}
    assert secret["name"] in users | secrets
    assert env["POSRECON_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    env_data = config_maps[c["envFrom"][0]["configMapRef"]["name"]]["data"]
    assert env_data["POSRECON_KAFKA_BOOTSTRAP_SERVERS"]
    assert "POSRECON_KAFKA_SASL_USERNAME" in env_data
    assert all(isinstance(v, str) for v in env_data.values()), "ConfigMap data values must be strings"


def test_config_toml_loads_with_the_worker_loader(tmp_path: Path) -> None:
    c = container()
    config_path = c["args"][c["args"].index("--config") + 1]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in worker()["spec"]["template"]["spec"]["volumes"]}
    mount = next(
        m for m in mounts.values() if m["mountPath"] == config_path or config_path.startswith(m["mountPath"] + "/")
    )
    config_map = the("ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    toml = tmp_path / "posrecon.toml"
    toml.write_text(config_map["data"]["posrecon.toml"])
    env = dict(the("ConfigMap", c["envFrom"][0]["configMapRef"]["name"])["data"])
    env["POSRECON_KAFKA_SASL_PASSWORD"] = "from-the-secret"
    settings = load_settings(toml, env=env)  # the pod's environment on top of the file, as in the pod
    assert settings.topics == Topics()
    assert settings.kafka["security.protocol"] == "SASL_SSL"
    assert settings.kafka["sasl.password"] == "from-the-secret"
    assert settings.kafka["sasl.username"] == env["POSRECON_KAFKA_SASL_USERNAME"]
    assert settings.kafka["bootstrap.servers"] == env["POSRECON_KAFKA_BOOTSTRAP_SERVERS"]
    ca = settings.kafka["ssl.ca.location"]
    assert any(ca.startswith(m["mountPath"] + "/") for m in mounts.values())


# ------------------------------------------------------------------------------------------- topics


def test_topics_match_the_contract_and_the_worker() -> None:
    topics = {t["spec"]["topicName"]: t for t in of_kind("KafkaTopic")}
    contract = topic_configs(Topics())
    changelog, sightings, card_changelog = internal_topics("posrecon")
    batch_sightings, batch_changelog = batch_topics("posrecon")
    assert set(topics) == set(contract) | {changelog, sightings, card_changelog, batch_sightings, batch_changelog}
    for name, topic in topics.items():
        spec = topic["metadata"], topic["spec"]
        assert spec[0]["labels"]["strimzi.io/cluster"]
        assert spec[1]["partitions"] == DEFAULT_PARTITIONS, name
        assert spec[1]["replicas"] == 3, name
        assert spec[1]["config"]["min.insync.replicas"] == "2", name
        assert all(isinstance(v, str) for v in spec[1]["config"].values()), name
    compacted = {name for name, config in contract.items() if config.get("cleanup.policy") == "compact"}
    assert {Topics().reconciled, Topics().exceptions} <= compacted
    compacted |= {changelog, card_changelog, batch_changelog}
    for name, topic in topics.items():
        config = topic["spec"]["config"]
        if name in compacted:
            assert config["cleanup.policy"] == "compact", name
        else:
            assert config["cleanup.policy"] == "delete", name
            assert int(config["retention.ms"]) >= 7 * 86_400_000, name
    for name, config in contract.items():  # what `posrecon topics create` would set
        for key, value in config.items():
            assert topics[name]["spec"]["config"][key] == value


def test_kafka_user_acls_cover_the_worker() -> None:
    user = the("KafkaUser", "posrecon")
    acls = user["spec"]["authorization"]["acls"]
    granted = {(a["resource"]["type"], a["resource"]["name"]): set(a["operations"]) for a in acls}
    t = Topics()
    for name in (t.terminal, t.settlement, t.batches):
        assert "Read" in granted[("topic", name)]
    for name in (t.reconciled, t.alerts, t.deadletter, t.batch_reconciled):
        assert "Write" in granted[("topic", name)]
    assert {"Read", "Write"} <= granted[("topic", "posrecon-")]
    assert "Read" in granted[("group", "posrecon")]
    assert "Write" in granted[("transactionalId", "posrecon-")]


def test_a_broken_manifest_would_be_caught() -> None:
    """The port helper rejects a probe on an undeclared port (the check is not vacuous)."""
    c = {"ports": [{"name": "metrics", "containerPort": 9108}]}
    with pytest.raises(AssertionError):
        port_number("http", c)
    with pytest.raises(AssertionError):
        port_number(8080, c)
