"""Harness for the deploy tests that run real things: the worker as deploy/k8s/ describes it, network
namespaces (iproute2, root), a TCP relay, HTTP polling.

Run as a script it is the relay: ``python deploykit.py relay LISTEN_HOST PORT TARGET_HOST PORT``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOYMENT = REPO / "deploy" / "k8s" / "worker-deployment.yaml"
CONFIGMAP = REPO / "deploy" / "k8s" / "configmap.yaml"
# the only [kafka] lines dropped from the ConfigMap's TOML: the test broker is plaintext on loopback
SECURITY_KEYS = ("security.protocol", "sasl.mechanism", "ssl.ca.location")


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("POSRECON_REQUIRE_BROKER") == "1":
            pytest.fail(f"{name} is required in CI but not on PATH: {hint}")
        pytest.skip(f"{name} not on PATH ({hint})")
    return path


def require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("POSRECON_REQUIRE_BROKER") == "1":
            pytest.fail("network namespaces need root (CI runs as root)")
        pytest.skip("network namespaces need root")


def http_get(url: str, timeout: float = 3) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(url: str, deadline_s: float, alive: Any = None, status: int = 200) -> tuple[int, str]:
    """Poll ``url`` until it answers ``status``; raises AssertionError with the last error at the deadline."""
    deadline, last = time.monotonic() + deadline_s, "never tried"
    while time.monotonic() < deadline:
        if alive is not None:
            assert alive(), f"process died while waiting for {url}"
        try:
            got = http_get(url)
            if got[0] == status:
                return got
            last = f"HTTP {got[0]}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer {status} within {deadline_s} s: {last}")


# ---- the worker as the Deployment runs it


@dataclass
class PodSpec:
    """The worker container's command line and environment, as the kubelet would give them."""

    args: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    files: dict[str, str]  # mount path -> content of the mounted file (ConfigMap / Secret)


def _docs(path: Path) -> list[dict[str, Any]]:
    import yaml

    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def pod_spec(pod_name: str, secrets: dict[tuple[str, str], str]) -> PodSpec:
    """Read deploy/k8s: container args, env (envFrom ConfigMaps, fieldRefs, secretKeyRefs from ``secrets``)."""
    deployment = next(d for d in _docs(DEPLOYMENT) if d["kind"] == "Deployment")
    maps = {d["metadata"]["name"]: d["data"] for d in _docs(CONFIGMAP) if d["kind"] == "ConfigMap"}
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "fieldRef" in item["valueFrom"]:
            assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", item
            env[item["name"]] = pod_name
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[(ref["name"], ref["key"])]
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            data = maps[volume["configMap"]["name"]]
            for item in volume["configMap"]["items"]:
                at = (
                    mount["mountPath"]
                    if mount.get("subPath") == item["path"]
                    else f"{mount['mountPath']}/{item['path']}"
                )
                files[at] = data[item["key"]]
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            for item in volume["secret"].get("items", []):
                if (name, item["key"]) in secrets:
                    files[f"{mount['mountPath']}/{item['path']}"] = secrets[(name, item["key"])]
    ports = {p["name"]: int(p["containerPort"]) for p in container["ports"]}
    return PodSpec([str(a) for a in container["args"]], env, ports, files)


def plaintext_toml(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.strip().strip('"').startswith(SECURITY_KEYS))


def materialise(spec: PodSpec, root: Path) -> PodSpec:
    """Write the mounted files under ``root`` and point args/env at them (the kubelet's mounts, without a mount)."""
    moved: dict[str, str] = {}
    for at, content in spec.files.items():
        target = root / at.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(plaintext_toml(content) if at.endswith(".toml") else content)
        moved[at] = str(target)
    args = [moved.get(a, a) for a in spec.args]
    env = {k: moved.get(v, v) for k, v in spec.env.items()}
    return PodSpec(args, env, spec.ports, spec.files)


# ---- PromQL expressions of the rules and dashboards, split for evaluation

_SET_OP = re.compile(r"\b(and|or|unless)\b(\s+(on|ignoring)\s*\([^)]*\))?(\s+group_(left|right)(\s*\([^)]*\))?)?")
_THRESHOLD = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*(bool\s+)?[0-9.e+-]+\s*$")
_OFFSET = re.compile(r"\s+offset\s+\d+[smhdw]")


def _unwrap(expr: str) -> str:
    """Drop parentheses around the whole expression."""
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for i, ch in enumerate(expr):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0 and i < len(expr) - 1:
                return expr
        expr = expr[1:-1].strip()
    return expr


def _top_level_split(expr: str) -> list[str]:
    depth, parts, start, i = 0, [], 0, 0
    while i < len(expr):
        ch = expr[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == '"':
            i = expr.index('"', i + 1)
        elif (
            depth == 0
            and (m := _SET_OP.match(expr, i))
            and (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] == "_"))
        ):
            parts.append(expr[start:i])
            start = i = m.end()
            continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts]


def leaf_expressions(expr: str) -> list[str]:
    """The operands of an alert expression's set operators (and, or, unless), recursively, each without its
    threshold: what must return a series for the rule to be able to fire. ``absent(...)`` leaves stay whole."""
    expr = _unwrap(expr)
    parts = _top_level_split(expr)
    if len(parts) > 1:
        return [leaf for part in parts for leaf in leaf_expressions(part)]
    stripped = _unwrap(_THRESHOLD.sub("", expr))
    return [stripped] if stripped == expr else leaf_expressions(stripped)


def without_offsets(expr: str) -> str:
    return _OFFSET.sub("", expr)


# ---- network namespaces


class Netns:
    """A network namespace joined to the host by a veth pair on 10.213.N.0/30 (host .1, namespace .2)."""

    def __init__(self) -> None:
        require_root()
        self.ip = require_tool("ip", "apt-get install iproute2 (make tools)")
        tag = f"{os.getpid() % 10000}{random.randrange(100)}"
        self.name, self.host_if, self.ns_if = f"posrecon-{tag}", f"prh{tag}", f"prn{tag}"
        net = random.randrange(256)
        self.host_addr, self.ns_addr = f"10.213.{net}.1", f"10.213.{net}.2"
        self._ip("netns", "add", self.name)
        try:
            self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            self._ip("link", "set", self.ns_if, "netns", self.name)
            self._ip("addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
            self._ip("link", "set", self.host_if, "up")
            self._ip("-n", self.name, "addr", "add", f"{self.ns_addr}/30", "dev", self.ns_if)
            self._ip("-n", self.name, "link", "set", self.ns_if, "up")
            self._ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def _ip(self, *argv: str) -> None:
        subprocess.run([self.ip, *argv], check=True, capture_output=True, text=True)

    def command(self, argv: list[str]) -> list[str]:
        return [self.ip, "netns", "exec", self.name, *argv]

    def close(self) -> None:
        # deleting the namespace deletes its end of the veth pair, and with it the host end
        subprocess.run([self.ip, "netns", "del", self.name], check=False, capture_output=True)
        subprocess.run([self.ip, "link", "del", self.host_if], check=False, capture_output=True)


def relay_command(listen_host: str, listen_port: int, target_host: str, target_port: int) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "relay",
        listen_host,
        str(listen_port),
        target_host,
        str(target_port),
    ]


def wait_port(host: str, port: int, deadline_s: float = 15, via: Netns | None = None) -> None:
    probe = f"import socket; socket.create_connection(({host!r}, {port}), 1).close()"
    argv = [sys.executable, "-c", probe]
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if subprocess.run(via.command(argv) if via else argv, capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"{host}:{port} not listening after {deadline_s} s")


async def _relay(listen_host: str, listen_port: int, target_host: str, target_port: int) -> None:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, listen_host, listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__" and sys.argv[1:2] == ["relay"]:
    host, port, target, target_port = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    print(json.dumps({"relay": f"{host}:{port} -> {target}:{target_port}"}), flush=True)
    asyncio.run(_relay(host, port, target, target_port))
