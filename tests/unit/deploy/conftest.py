"""Shared fixtures of the deployment tests (deploy/**, docs/runbook.md).

External tools (promtool, amtool, docker compose) are skipped when missing, except that a tool marked
required fails the test under ``POSRECON_REQUIRE_BROKER=1`` (CI: ``make test``, whose ``tools`` target
installs promtool).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"


def find_tool(name: str, *, required_in_ci: bool, hint: str) -> str:
    """Path of ``name`` on PATH; otherwise fail (CI, required) or skip."""
    path = shutil.which(name)
    if path is not None:
        return path
    if required_in_ci and os.environ.get("POSRECON_REQUIRE_BROKER") == "1":
        pytest.fail(f"{name} is required in CI (POSRECON_REQUIRE_BROKER=1) but not on PATH: {hint}")
    pytest.skip(f"{name} not on PATH ({hint})")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def promtool() -> str:
    return find_tool(
        "promtool",
        required_in_ci=True,
        hint="run `make tools` (as root it installs Debian's prometheus package) or `apt-get install prometheus`",
    )


@pytest.fixture(scope="session")
def amtool() -> str:
    """Alertmanager's config checker (Debian package prometheus-alertmanager); optional, never required."""
    return find_tool("amtool", required_in_ci=False, hint="apt-get install prometheus-alertmanager")
