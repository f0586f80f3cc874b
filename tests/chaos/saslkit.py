"""A LocalBroker with an extra SASL_SSL listener (SCRAM-SHA-512 over TLS), for the security test.

* Certificates: a throw-away CA and a server certificate for 127.0.0.1 / localhost, made with ``openssl``
  (PKCS#12 keystore for the broker, the CA as PEM for librdkafka's ``ssl.ca.location``).
* The SCRAM user is created when the storage is formatted (KRaft: ``kafka.tools.StorageTool format
  --add-scram 'SCRAM-SHA-512=[name=...,password=...]'``), so it exists before the broker first starts.
* PLAINTEXT (inter-broker and the readiness probe of LocalBroker) and CONTROLLER stay as they are; clients
  under test are only given the SASL_SSL address.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import posrecon.localbroker.process as broker_module
from posrecon.localbroker import HOST, BrokerError, LocalBroker, find_free_port

MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Tls:
    ca_pem: Path
    keystore: Path
    password: str


def make_certificates(directory: Path) -> Tls:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BrokerError("openssl not found: needed to make the test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)

    def run(*args: str) -> None:
        proc = subprocess.run([openssl, *args], cwd=directory, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BrokerError(f"openssl {' '.join(args)} failed: {proc.stderr[-2000:]}")

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=posrecon-test-ca",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    run(
        "pkcs12",
        "-export",
        "-in",
        "server.pem",
        "-inkey",
        "server.key",
        "-certfile",
        "ca.pem",
        "-name",
        "kafka",
        "-out",
        "server.p12",
        "-passout",
        f"pass:{password}",
    )
    return Tls(directory / "ca.pem", directory / "server.p12", password)


class SaslBroker(LocalBroker):
    """LocalBroker plus ``SASL_SSL://127.0.0.1:<sasl_port>`` with one SCRAM-SHA-512 user."""

    def __init__(self, data_dir: Path, tls: Tls, username: str, password: str) -> None:
        super().__init__(data_dir)
        self.tls = tls
        self.username = username
        self.password = password
        self.sasl_port = find_free_port()

    @property
    def sasl_bootstrap(self) -> str:
        return f"{HOST}:{self.sasl_port}"

    def client_config(self, password: str | None = None) -> dict[str, str]:
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": MECHANISM,
            "sasl.username": self.username,
            "sasl.password": self.password if password is None else password,
            "ssl.ca.location": str(self.tls.ca_pem),
        }

    def _extra(self) -> dict[str, str]:
        prefix = f"listener.name.sasl_ssl.{MECHANISM.lower()}"
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": MECHANISM,
            f"{prefix}.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.ssl.keystore.type": "PKCS12",
            "listener.name.sasl_ssl.ssl.keystore.location": str(self.tls.keystore),
            "listener.name.sasl_ssl.ssl.keystore.password": self.tls.password,
            "listener.name.sasl_ssl.ssl.key.password": self.tls.password,
        }

    def start(self, *, timeout: float | None = None) -> LocalBroker:
        original = broker_module.render_server_properties
        sasl = f"SASL_SSL://{HOST}:{self.sasl_port}"

        def render(**kwargs: object) -> str:
            props: dict[str, str] = {}
            for line in original(**kwargs).splitlines():  # type: ignore[arg-type]
                if line and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    props[key] = value
            props["listeners"] += f",{sasl}"
            props["advertised.listeners"] += f",{sasl}"
            props["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
            props.update(self._extra())
            return "\n".join(f"{k}={v}" for k, v in props.items()) + "\n"

        broker_module.render_server_properties = render  # only for the duration of start()
        try:
            return super().start(timeout=timeout)
        finally:
            broker_module.render_server_properties = original

    def _format_storage(self, java: str, libs: Path) -> None:
        if (self.log_dir / "meta.properties").is_file():
            return
        scram = f"{MECHANISM}=[name={self.username},password={self.password}]"
        broker_module.format_storage(
            java,
            libs,
            self.data_dir,
            self.log4j_properties,
            self.server_properties,
            extra=("--add-scram", scram),
            secret=self.password,
        )
