"""Who may use the ops API: bearer tokens with roles, read from a file, and the optional TLS of the server.

Tokens file (``--tokens-file`` / ``POSRECON_TOKENS_FILE``; on Kubernetes a Secret mounted as a file), one
token a line, ``#`` comments and blank lines ignored::

    # role      name          token (plain) or sha256:<hex of the token's SHA-256>
    viewer      grafana-link  sha256:<64 hex digits, SHA-256 of the token>
    operator    alice         sha256:<64 hex digits>

* ``viewer`` may read (GET, HEAD); ``operator`` may also act (every other method). The name is who
  acted (audit); it is never the secret.
* The file keeps hashes (``sha256:``) so that reading it does not reveal a token; a plain token is
  accepted too (hashed on load). Presented tokens are hashed and compared with ``hmac.compare_digest``
  against every entry (no early exit), and no token or hash is ever logged or echoed.
* ``/healthz``, ``/readyz`` and ``/metrics`` are open (probes and Prometheus carry no token).
* Without a tokens file every other route answers 401: the API is closed, not open, by default
  (the worker logs a warning at start-up). docs/operations.md, "Ops API access".
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import hmac
import json
import logging
import os
import ssl
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

log = logging.getLogger("posrecon.auth")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
READ_METHODS = frozenset({"GET", "HEAD"})
HASH_PREFIX = "sha256:"
_PRINCIPAL = "posrecon_principal"


class Role(enum.IntEnum):
    """Ordered: a role may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2


class TokensFileError(ValueError):
    """A tokens file that cannot be used; the message names the line, never its secret."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str

    @property
    def headers(self) -> dict[str, str]:
        # RFC 6750: 401 says how to authenticate; 403 means the token was fine but not enough
        if self.status == 401:
            return {"WWW-Authenticate": 'Bearer realm="posrecon"'}
        return {"WWW-Authenticate": 'Bearer realm="posrecon", error="insufficient_scope"'}


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(text: str, source: str = "tokens file") -> dict[bytes, Principal]:
    """Token digest -> principal. Raises :class:`TokensFileError` on a malformed line."""
    entries: dict[bytes, Principal] = {}
    names: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 3:
            raise TokensFileError(f"{source} line {number}: expected 'role name token', got {len(fields)} fields")
        role_name, name, secret = fields
        try:
            role = Role[role_name.upper()]
        except KeyError:
            raise TokensFileError(f"{source} line {number}: unknown role {role_name!r} (viewer, operator)") from None
        if name in names:
            raise TokensFileError(f"{source} line {number}: name {name!r} appears twice")
        if secret.startswith(HASH_PREFIX):
            try:
                digest = bytes.fromhex(secret[len(HASH_PREFIX) :])
            except ValueError:
                digest = b""
            if len(digest) != hashlib.sha256().digest_size:
                raise TokensFileError(f"{source} line {number}: sha256: needs 64 hex digits")
        else:
            digest = token_digest(secret)
        if digest in entries:
            raise TokensFileError(f"{source} line {number}: the same token as {entries[digest].name!r}")
        names.add(name)
        entries[digest] = Principal(name, role)
    if not entries:
        raise TokensFileError(f"{source}: no tokens (an empty file would lock every caller out)")
    return entries


def load_tokens(path: str | Path) -> dict[bytes, Principal]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TokensFileError(f"cannot read tokens file {path}: {exc.strerror}") from None
    return parse_tokens(text, str(path))


class Authenticator:
    """Decides every request of the ops API; ``tokens=None`` (no file configured) refuses all closed routes."""

    def __init__(self, tokens: dict[bytes, Principal] | None, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.tokens = tokens
        self.open_paths = open_paths

    @staticmethod
    def needed(method: str) -> Role:
        return Role.VIEWER if method in READ_METHODS else Role.OPERATOR

    def identify(self, authorization: str | None) -> Principal | None:
        if not self.tokens or not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = token_digest(token.strip())
        found: Principal | None = None
        for digest, principal in self.tokens.items():  # every entry, no early exit: timing says nothing
            if hmac.compare_digest(presented, digest):
                found = principal
        return found

    def check(self, method: str, path: str, authorization: str | None) -> Principal | Refusal | None:
        """None for an open path; the caller's principal when allowed; else the refusal (401 or 403)."""
        if path.split("?", 1)[0] in self.open_paths:
            return None
        if self.tokens is None:
            return Refusal(
                401, "the ops API has no tokens configured (--tokens-file): only /healthz, /readyz, /metrics are served"
            )
        principal = self.identify(authorization)
        if principal is None:
            return Refusal(401, "missing or invalid bearer token")
        if principal.role < self.needed(method):
            return Refusal(403, f"role {principal.role.name.lower()} may not {method} here (operator needed)")
        return principal

    def admit(self, handler: BaseHTTPRequestHandler) -> bool:
        """Gate for a request handler: True to go on (the caller then is :func:`principal_of` the handler);
        else the 401/403 answer is sent and False returned."""
        verdict = self.check(handler.command, handler.path, handler.headers.get("Authorization"))
        if not isinstance(verdict, Refusal):
            setattr(handler, _PRINCIPAL, verdict)  # the stdlib handler has no attribute for it
            return True
        send_json(handler, verdict.status, {"error": verdict.message}, verdict.headers)
        return False


def principal_of(handler: BaseHTTPRequestHandler) -> Principal | None:
    """Who sent an admitted request (the actor of an operator action); None on an open path."""
    principal = getattr(handler, _PRINCIPAL, None)
    return principal if isinstance(principal, Principal) else None


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body, default=str).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """Server-side TLS (1.2 or later) from PEM files; a Secret of type kubernetes.io/tls mounts both."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokens-file",
        default=os.environ.get("POSRECON_TOKENS_FILE"),
        help="bearer tokens of the ops API, lines 'role name token|sha256:HEX' (env POSRECON_TOKENS_FILE); "
        "without it only /healthz, /readyz, /metrics answer (docs/operations.md)",
    )
    parser.add_argument(
        "--tls-cert",
        default=os.environ.get("POSRECON_TLS_CERT"),
        help="PEM certificate: serve the ops API over HTTPS (env POSRECON_TLS_CERT)",
    )
    parser.add_argument(
        "--tls-key",
        default=os.environ.get("POSRECON_TLS_KEY"),
        help="PEM private key of --tls-cert (env POSRECON_TLS_KEY)",
    )


def from_arguments(args: argparse.Namespace) -> tuple[Authenticator, ssl.SSLContext | None]:
    """The ops API's authenticator and TLS context from ``posrecon run``'s arguments (raises on bad files)."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise TokensFileError("--tls-cert and --tls-key go together")
    tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    if args.tokens_file:
        tokens = load_tokens(args.tokens_file)
        roles = sorted({p.role.name.lower() for p in tokens.values()})
        log.info("ops API tokens loaded", extra={"fields": {"tokens": len(tokens), "roles": roles}})
        return Authenticator(tokens), tls
    log.warning(
        "ops API without tokens: every route but /healthz, /readyz, /metrics answers 401 "
        "(set --tokens-file / POSRECON_TOKENS_FILE)"
    )
    return Authenticator(None), tls
