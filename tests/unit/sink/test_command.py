"""``posrecon sink postgres``'s command line (no broker, no database): posrecon/sink/command.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from posrecon.cli import build_parser, main
from posrecon.net import find_free_port


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """main() points the root logger at this test's captured stderr: put back what was there."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_help_names_the_tables_and_the_dsn_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sink", "postgres", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for word in ("reconciled_revisions", "reconciled_current", "sink_offsets", "POSRECON_SINK_DSN", "--exit-at-end"):
        assert word in out


def test_the_dsn_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSRECON_SINK_DSN", "postgresql://ledger@db/ledger")
    monkeypatch.setenv("POSRECON_SINK_GROUP", "ledger-a")
    args = build_parser().parse_args(["sink", "postgres"])
    assert args.dsn == "postgresql://ledger@db/ledger" and args.group == "ledger-a" and args.batch_size == 2000


def test_without_a_dsn_it_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POSRECON_SINK_DSN", raising=False)
    assert main(["sink", "postgres"]) == 2
    assert "--dsn" in capsys.readouterr().out


def test_a_batch_size_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sink", "postgres", "--batch-size", "0"])
    assert "must be > 0" in capsys.readouterr().err


def test_an_unreachable_database_is_reported_without_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    dsn = f"postgresql://ledger:s3cret-pw@127.0.0.1:{find_free_port()}/ledger?connect_timeout=3"
    assert main(["sink", "postgres", "--dsn", dsn, "--bootstrap", "127.0.0.1:1"]) == 2
    captured = capsys.readouterr()
    assert "database:" in captured.out
    assert "s3cret-pw" not in captured.out + captured.err
