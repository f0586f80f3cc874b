"""posrecon.app.auth: the tokens file, the decision of every request, TLS arguments."""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
from email.message import Message
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from posrecon.app.auth import (
    Authenticator,
    Principal,
    Refusal,
    Role,
    TokensFileError,
    add_arguments,
    from_arguments,
    load_tokens,
    parse_tokens,
    principal_of,
)

VIEWER_TOKEN = "v-3c1e0f5e2b"
OPERATOR_TOKEN = "o-9a7d44e1c0"
TOKENS = f"""
# comment line
viewer   grafana  sha256:{hashlib.sha256(VIEWER_TOKEN.encode()).hexdigest()}
operator alice    {OPERATOR_TOKEN}   # plain token, hashed on load
"""


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator(parse_tokens(TOKENS))


def test_hashed_and_plain_tokens_load_with_their_roles() -> None:
    principals = sorted(parse_tokens(TOKENS).values(), key=lambda p: p.name)
    assert principals == [Principal("alice", Role.OPERATOR), Principal("grafana", Role.VIEWER)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("viewer onlytwo", "expected 'role name token'"),
        ("admin bob s3cret", "unknown role 'admin'"),
        ("viewer a t1\nviewer a t2", "name 'a' appears twice"),
        ("viewer a t1\noperator b t1", "the same token as 'a'"),
        ("viewer a sha256:abc", "64 hex digits"),
        ("viewer a sha256:" + "zz" * 32, "64 hex digits"),
        ("# nothing\n\n", "no tokens"),
    ],
)
def test_malformed_files_are_refused_without_echoing_secrets(text: str, message: str) -> None:
    with pytest.raises(TokensFileError, match=message) as info:
        parse_tokens(text)
    assert "s3cret" not in str(info.value) and "t1" not in str(info.value).replace("line", "")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError, match="cannot read tokens file"):
        load_tokens(tmp_path / "missing")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/healthz?x=1"])
def test_open_paths_need_no_token(auth: Authenticator, path: str) -> None:
    assert auth.check("GET", path, None) is None
    assert Authenticator(None).check("GET", path, None) is None


@pytest.mark.parametrize(
    ("method", "authorization", "expected"),
    [
        ("GET", None, 401),
        ("GET", "Bearer ", 401),
        ("GET", "Bearer wrong", 401),
        ("GET", f"Basic {VIEWER_TOKEN}", 401),
        ("GET", VIEWER_TOKEN, 401),
        ("GET", f"Bearer {VIEWER_TOKEN}", "grafana"),
        ("GET", f"bearer {VIEWER_TOKEN}", "grafana"),
        ("HEAD", f"Bearer {VIEWER_TOKEN}", "grafana"),
        ("POST", f"Bearer {VIEWER_TOKEN}", 403),
        ("DELETE", f"Bearer {VIEWER_TOKEN}", 403),
        ("GET", f"Bearer {OPERATOR_TOKEN}", "alice"),
        ("POST", f"Bearer {OPERATOR_TOKEN}", "alice"),
        ("POST", None, 401),
    ],
)
def test_the_decision(auth: Authenticator, method: str, authorization: str | None, expected: int | str) -> None:
    verdict = auth.check(method, "/orders/o-1", authorization)
    if isinstance(expected, int):
        assert isinstance(verdict, Refusal) and verdict.status == expected
        assert verdict.headers["WWW-Authenticate"].startswith("Bearer")
        assert VIEWER_TOKEN not in verdict.message and OPERATOR_TOKEN not in verdict.message
    else:
        assert isinstance(verdict, Principal) and verdict.name == expected


def test_without_tokens_every_closed_route_is_401() -> None:
    verdict = Authenticator(None).check("GET", "/pending", f"Bearer {OPERATOR_TOKEN}")
    assert isinstance(verdict, Refusal) and verdict.status == 401 and "no tokens configured" in verdict.message


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_arguments_load_the_file_and_never_log_a_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    with caplog.at_level(logging.DEBUG, logger="posrecon.auth"):
        auth, tls = from_arguments(_args("--tokens-file", str(path)))
    assert tls is None and isinstance(auth.check("GET", "/x", f"Bearer {VIEWER_TOKEN}"), Principal)
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    assert VIEWER_TOKEN not in logged and OPERATOR_TOKEN not in logged
    assert hashlib.sha256(VIEWER_TOKEN.encode()).hexdigest() not in logged


def test_no_tokens_file_warns_and_closes(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("POSRECON_TOKENS_FILE", raising=False)
    with caplog.at_level(logging.WARNING, logger="posrecon.auth"):
        auth, _ = from_arguments(_args())
    assert auth.tokens is None and "without tokens" in caplog.text


def test_env_names_the_tokens_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    monkeypatch.setenv("POSRECON_TOKENS_FILE", str(path))
    auth, _ = from_arguments(_args())
    assert auth.tokens is not None and len(auth.tokens) == 2


def test_tls_cert_and_key_go_together(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError, match="go together"):
        from_arguments(_args("--tls-cert", str(tmp_path / "c.pem")))
    with pytest.raises(OSError):
        from_arguments(_args("--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem")))


def test_an_admitted_request_knows_its_principal(auth: Authenticator) -> None:
    """The gate the ops API's handler runs: refusals are answered, the actor of an admitted request is kept."""

    def handler(method: str, token: str | None) -> BaseHTTPRequestHandler:
        h = BaseHTTPRequestHandler.__new__(BaseHTTPRequestHandler)
        h.command, h.path, h.request_version, h.requestline = method, "/cases/a-1/actions", "HTTP/1.1", ""
        h.client_address = ("127.0.0.1", 1)
        h.headers = Message()
        if token:
            h.headers["Authorization"] = f"Bearer {token}"
        h.wfile = io.BytesIO()
        return h

    admitted = handler("POST", OPERATOR_TOKEN)
    assert auth.admit(admitted) and principal_of(admitted) == Principal("alice", Role.OPERATOR)
    refused = handler("POST", VIEWER_TOKEN)
    assert not auth.admit(refused) and principal_of(refused) is None
    answer = refused.wfile.getvalue().decode()  # type: ignore[attr-defined]
    assert " 403 " in answer.splitlines()[0] and "WWW-Authenticate: Bearer" in answer and VIEWER_TOKEN not in answer
