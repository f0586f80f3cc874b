"""deploy/k8s/*.yaml against the Kubernetes API schemas, offline (kubernetes-validate ships them), strict
(unknown fields rejected), for the oldest and newest Kubernetes versions we claim; and the worker's
environment that makes its ports reachable in a pod."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
# custom resources: their schemas come with the operators (Strimzi, Prometheus Operator), not with Kubernetes,
# and kubernetes-validate has no offline copy of them; tests/unit/deploy/test_k8s_manifests.py checks them by hand
CRD_GROUPS = {
    "kafka.strimzi.io": "Strimzi CRD (KafkaTopic/KafkaUser): schema ships with the Strimzi operator",
    "monitoring.coreos.com": "Prometheus Operator CRD (PodMonitor): schema ships with the operator",
}


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                found.append((f"{path.name}#{index}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


DOCS = documents()
CUSTOM = [(where, doc) for where, doc in DOCS if doc["apiVersion"].split("/")[0] in CRD_GROUPS]
CORE = [(where, doc) for where, doc in DOCS if (where, doc) not in CUSTOM]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("where", "doc"), CORE, ids=[where for where, _ in CORE])
def test_manifest_matches_the_kubernetes_schema(where: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_custom_resources_are_not_schema_checked() -> None:
    """Noted, not hidden: the CRD documents this file cannot validate (skips with the list and the reason)."""
    assert CUSTOM and len(CORE) >= 5
    kinds = sorted({f"{doc['kind']} ({doc['apiVersion']})" for _, doc in CUSTOM})
    pytest.skip(
        f"{len(CUSTOM)} custom resources not schema-checked, {', '.join(kinds)}: "
        + "; ".join(sorted(set(CRD_GROUPS.values())))
    )


def test_every_custom_resource_is_a_known_crd() -> None:
    """The skip above covers only the CRDs named there: a new group would need its own note."""
    groups = {doc["apiVersion"].split("/")[0] for _, doc in DOCS if "." in doc["apiVersion"].split("/")[0]}
    assert groups - {"apps", "policy"} == set(CRD_GROUPS)


def _deployment() -> dict[str, Any]:
    return copy.deepcopy(next(doc for _, doc in DOCS if doc["kind"] == "Deployment"))


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(envFrm=[]),  # typo: unknown field
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="http"),
        lambda d: d["spec"].update(replicas="3"),
    ],
    ids=["unknown-field", "port-not-int", "replicas-string"],
)
def test_a_broken_deployment_is_rejected(spoil: Any) -> None:
    doc = _deployment()
    spoil(doc)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def test_the_worker_listens_on_the_pod_address() -> None:
    """The probes and Prometheus reach the pod IP: the worker must not keep its 127.0.0.1 default."""
    env_map = next(doc for _, doc in DOCS if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "posrecon-env")
    assert env_map["data"]["POSRECON_LISTEN"] == "0.0.0.0"
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    assert {"configMapRef": {"name": "posrecon-env"}} in container["envFrom"]


def test_the_ops_tokens_secret_is_mounted_where_the_worker_reads_it() -> None:
    env_map = next(doc for _, doc in DOCS if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "posrecon-env")
    pod = _deployment()["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "ops-tokens")
    volume = next(v for v in pod["volumes"] if v["name"] == "ops-tokens")
    item = volume["secret"]["items"][0]
    assert env_map["data"]["POSRECON_TOKENS_FILE"] == f"{mount['mountPath']}/{item['path']}"
    assert mount["readOnly"] and volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
