"""The broker's jars: fetched once from Maven Central by ``deploy/kafka/pom.xml`` into the cache; the Java check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from posrecon.config import cache_dir, repo_root
from posrecon.localbroker.errors import BrokerError

KAFKA_VERSION = "3.9.1"
ENV_POM = "POSRECON_KAFKA_POM"

_JAVA_HINT = (
    f"Apache Kafka {KAFKA_VERSION} needs a Java 17 (or newer) runtime: install one "
    "(Debian/Ubuntu: `sudo apt-get install openjdk-17-jre-headless`; macOS: `brew install openjdk@17`) "
    "or put $JAVA_HOME/bin on PATH."
)
_MVN_HINT = (
    "the Kafka jars are fetched from Maven Central with Maven: install it "
    "(Debian/Ubuntu: `sudo apt-get install maven`; macOS: `brew install maven`), "
    f"or put an existing Kafka {KAFKA_VERSION} libs/ directory at {{libs}}."
)


def pom_path() -> Path:
    """The Maven pom listing the broker's jars: ``$POSRECON_KAFKA_POM`` or ``<repo>/deploy/kafka/pom.xml``."""
    env = os.environ.get(ENV_POM)
    if env:
        return Path(env).expanduser().resolve()
    root = repo_root()
    if root is None:
        raise BrokerError(
            f"cannot find deploy/kafka/pom.xml (not running from a posrecon checkout); set {ENV_POM}=/path/to/pom.xml"
        )
    return root / "deploy" / "kafka" / "pom.xml"


def kafka_home() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}"


def require_java() -> str:
    """Path of the ``java`` executable, or :class:`BrokerError` telling the user to install Java 17."""
    java = shutil.which("java")
    if java is None:
        java_home = os.environ.get("JAVA_HOME")
        candidate = Path(java_home) / "bin" / "java" if java_home else None
        if candidate is not None and os.access(candidate, os.X_OK):
            return str(candidate)
        raise BrokerError(f"`java` was not found on PATH. {_JAVA_HINT}")
    return java


def require_mvn(libs: Path) -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("`mvn` (Apache Maven) was not found on PATH; " + _MVN_HINT.format(libs=libs))
    return mvn


def _libs_complete(libs: Path) -> bool:
    return (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file() and (
        libs / f"kafka-clients-{KAFKA_VERSION}.jar"
    ).is_file()


def ensure_kafka_libs(*, verbose: bool = True) -> Path:
    """The broker's ``libs`` dir, downloading it with Maven the first time.

    The download goes to a temporary sibling dir that is renamed into place when complete, so an
    interrupted download is retried next time instead of leaving a half-filled ``libs``.
    """
    libs = kafka_home() / "libs"
    if _libs_complete(libs):
        return libs
    if libs.exists():
        raise BrokerError(f"{libs} exists but does not hold the Kafka {KAFKA_VERSION} jars; remove it and retry")
    mvn = require_mvn(libs)
    pom = pom_path()
    if not pom.is_file():
        raise BrokerError(f"Maven pom {pom} does not exist (set {ENV_POM} to override)")
    tmp = libs.with_name(f"libs.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
    ]
    if verbose:
        print(
            f"fetching Apache Kafka {KAFKA_VERSION} jars with Maven into {libs} (one time) ...",
            file=sys.stderr,
        )
    started = time.monotonic()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not _libs_complete(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        output = (proc.stdout + proc.stderr).strip()[-4000:]
        raise BrokerError(
            f"Maven could not fetch the Kafka jars (exit code {proc.returncode}): {' '.join(cmd)}\n{output}\n"
            "Check network access to Maven Central (or your ~/.m2/settings.xml mirror)."
        )
    try:
        tmp.rename(libs)
    except OSError:  # somebody else finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not _libs_complete(libs):
            raise
    if verbose:
        print(f"fetched in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return libs
