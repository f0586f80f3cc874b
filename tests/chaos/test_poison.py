"""Poison input mixed into a valid stream: nothing crashes, nothing valid is lost, every poison record ends in
the dead-letter topic with its ``reason`` header, and no full card number is ever written anywhere.

Mixed into ~2000 simulated orders (which already carry the simulator's garbage lines, schema misfits and
PAN_IN_CARD_TOKEN events), about 1% extra records produced raw, next to the valid ones:

* random bytes (some with a card number inside, grouped by spaces or dashes; one with a card number as key),
* records of another schema: Avro single-object ``Alert`` / ``ReconciledOrder`` / ``SettlementNotice`` on the
  terminal topic and ``TerminalEvent`` on the settlement topic (known fingerprints of the wrong type),
* a valid TerminalEvent as JSON instead of Avro (with a card number as card_token), Avro with a truncated
  body, Avro with trailing bytes, a null value;

and, as contract lines (so the replay oracle sees them too), extra terminal events whose card_token is a card
number, bare, spaced and dashed.

Checks: the worker never dies; outputs == replay oracle (exactly once); dead letters == the oracle's plus one
DECODE_ERROR per raw poison record, each with reason / source.topic / source.partition / source.offset
headers; every raw byte of every output, changelog and repartition topic (read_uncommitted: aborted
transactions too) and of the worker log is free of every card number fed in.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chaoskit import all_topic_names, app_of, chaos_seed, check_exactly_once, oracle_plus, simulate
from leakkit import contains_any, luhn_pan, message_bytes, raw_dump

from livekit import WorkerProcess, replay_oracle
from posrecon.config import Topics
from posrecon.engine.pan import is_pan
from posrecon.kafka.feeder import Feeder
from posrecon.serde.codec import AvroCodec, DecodeError

pytestmark = [pytest.mark.chaos, pytest.mark.broker]
PARTITIONS = 4


def _doc(line: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _encodable(codec: AvroCodec, record: Any) -> bool:
    """True for a record the schema accepts (the simulation's garbage has unknown enum symbols, ...)."""
    try:
        codec.check(record)
    except DecodeError:
        return False
    return True


def _spaced(pan: str, sep: str) -> str:
    return sep.join(pan[i : i + 4] for i in range(0, len(pan), 4))


def _alert(rng: random.Random, pan: str) -> dict[str, Any]:
    return {
        "alert_id": f"a-{rng.randrange(10**9)}",
        "kind": "INVALID_EVENT",
        "severity": "WARNING",
        "order_id": None,
        "merchant_id": "m1",
        "terminal_id": None,
        "reason": f"card {_spaced(pan, ' ')} seen",
        "event_time": 1_767_225_600_000,
        "detected_at": 1_767_225_600_000,
        "related_ids": [pan],
    }


def _reconciled(rng: random.Random) -> dict[str, Any]:
    return {
        "order_id": f"o-{rng.randrange(10**9)}",
        "merchant_id": "m1",
        "terminal_id": None,
        "outcome": "MATCHED",
        "currency": "EUR",
        "approved_amount_minor": 100,
        "settled_amount_minor": 100,
        "approved_at": 1_767_225_600_000,
        "settled_at": 1_767_225_700_000,
        "settlement_lag_ms": 100_000,
        "notice_id": "n",
        "revision": 1,
    }


def poison(
    rng: random.Random, topics: Topics, sample: dict[str, Any], codecs: dict[str, AvroCodec], pans: set[str]
) -> tuple[str, bytes | None, bytes | None, str]:
    """One raw poison record: (topic, key, value, kind)."""
    pan = luhn_pan(rng, rng.choice(["4", "51", "37", "6011"]), rng.choice([15, 16, 19]))
    pans.add(pan)
    kind = rng.choice(
        [
            "random",
            "random_pan",
            "alert",
            "reconciled",
            "notice_on_terminal",
            "terminal_on_settlement",
            "json",
            "truncated",
            "trailing",
            "null",
        ]
    )
    term, settle = topics.terminal, topics.settlement
    terminal_record = dict(sample, card_token=pan, event_id=f"poison-{rng.randrange(10**9)}")
    value: bytes | None
    if kind == "random":
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    elif kind == "random_pan":
        sep = rng.choice([" ", "-", ""])
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))) + f"PAN={_spaced(pan, sep)};".encode()
    elif kind == "alert":
        value = codecs["Alert"].encode(_alert(rng, pan))
    elif kind == "reconciled":
        value = codecs["ReconciledOrder"].encode(_reconciled(rng))
    elif kind == "notice_on_terminal":
        notice = {
            "notice_id": "n1",
            "order_id": sample["order_id"],
            "merchant_id": sample["merchant_id"],
            "status": "SETTLED",
            "amount_minor": 100,
            "currency": "EUR",
            "settled_at": sample["event_time"],
            "batch_id": pan,
            "fee_minor": 0,
        }
        value = codecs["SettlementNotice"].encode(notice)
    elif kind == "terminal_on_settlement":
        return settle, sample["order_id"].encode(), codecs["TerminalEvent"].encode(terminal_record), kind
    elif kind == "json":
        value = json.dumps(terminal_record).encode()
    elif kind == "truncated":
        full = codecs["TerminalEvent"].encode(terminal_record)
        value = full[: rng.randrange(11, len(full) - 1)]
    elif kind == "trailing":
        value = codecs["TerminalEvent"].encode(terminal_record) + b"\x00" + pan.encode()
    else:
        value = None
    key = pan.encode() if kind == "random" and rng.random() < 0.3 else sample["order_id"].encode()
    return term, key, value, kind


def test_poison_records_dead_lettered_pan_masked_nothing_lost(
    warm_bootstrap: str, make_topics: Callable[..., Topics], spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    seed, rng = chaos_seed()
    bootstrap = warm_bootstrap
    sim = simulate(tmp_path / "sim", 2000, seed=seed % 1000 + 41, partitions=PARTITIONS)
    topics = make_topics(bootstrap, PARTITIONS)
    app = app_of(topics)

    # contract lines: the simulation plus terminal events with a card number as card_token
    lines = sim.read_text().splitlines()
    pans: set[str] = set()
    mixed: list[str] = []
    for line in lines:
        mixed.append(line)
        doc = _doc(line)
        if (
            doc is None
            or doc.get("source") != "terminal"
            or not isinstance(doc.get("record"), dict)
            or rng.random() > 0.01
        ):
            continue
        pan = luhn_pan(rng, "4", 16)
        pans.add(pan)
        rec = dict(
            doc["record"],
            card_token=rng.choice([pan, _spaced(pan, " "), _spaced(pan, "-")]),
            event_id=f"pan-{rng.randrange(10**9)}",
            order_id=f"pan-order-{rng.randrange(10**9)}",
        )
        mixed.append(json.dumps({**doc, "record": rec}))
    for line in mixed:  # the simulator's own PAN_IN_CARD_TOKEN tokens
        doc = _doc(line)
        if doc is not None and isinstance(doc.get("record"), dict):
            token = doc["record"].get("card_token")
            if isinstance(token, str) and is_pan(token):
                pans.add(token.replace(" ", "").replace("-", ""))
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join(mixed) + "\n")

    # feed in file order, raw poison records next to valid ones (same timestamp as the line before them)
    feeder = Feeder(bootstrap, topics)
    codecs = {name: AvroCodec(name) for name in ("TerminalEvent", "SettlementNotice", "Alert", "ReconciledOrder")}
    kinds: Counter[str] = Counter()
    sample: dict[str, Any] | None = None
    for line in mixed:
        feeder.send(*feeder.encode_line(line))
        doc = _doc(line)
        if doc and doc.get("source") == "terminal" and _encodable(codecs["TerminalEvent"], doc.get("record")):
            sample = doc["record"]  # a valid record to spoil: the simulation also writes garbage lines
        if sample is not None and rng.random() < 0.01:
            topic, key, value, kind = poison(rng, topics, sample, codecs, pans)
            feeder.send(topic, key, value, None)  # type: ignore[arg-type]
            kinds[kind] += 1
    feeder.flush()
    injected = sum(kinds.values())
    assert injected >= 30 and len(pans) >= 40, (kinds, len(pans))

    worker = spawn(bootstrap, topics, app, "w0", batch=500)
    oracle = oracle_plus(replay_oracle(src, tmp_path / "replay", PARTITIONS), {"DECODE_ERROR": injected})
    check = check_exactly_once(bootstrap, topics, app, oracle, alive=worker.alive)
    assert worker.alive(), f"the worker died on poison input:\n{worker.log()[-3000:]}"
    assert worker.stop() == 0, worker.log()[-3000:]
    print(f"poison kinds {dict(kinds)}; card numbers fed {len(pans)}; dead letters {dict(oracle.deadletters)}")
    assert check.ok, f"seed {seed}: {check.explain()}"

    letters = check.outputs.deadletters
    for letter in letters:
        for header in ("reason", "source.topic", "source.partition", "source.offset"):
            assert letter.headers.get(header), (header, letter.headers)
    assert Counter(d.headers["reason"] for d in letters)["PAN_IN_CARD_TOKEN"] >= 10
    masked = [d for d in letters if d.headers["reason"] == "PAN_IN_CARD_TOKEN"]
    assert all(d.value is not None and b"****" in d.value for d in masked)

    # no full card number anywhere the worker writes: outputs, changelogs, repartition topic, its log
    leaks: dict[str, set[str]] = {}
    for name in all_topic_names(topics, app)[2:]:
        blob = b"\x01".join(message_bytes(m) for m in raw_dump(bootstrap, name))
        found = contains_any(blob, pans)
        if found:
            leaks[name] = found
    found = contains_any(worker.log_path.read_bytes(), pans)
    if found:
        leaks["worker log"] = found
    assert not leaks, f"seed {seed}: full card numbers written: { {k: sorted(v)[:3] for k, v in leaks.items()} }"


def _separated(pan: str, length: int, sep: str) -> str:
    """``pan`` with single separators between its digits, ``length`` characters in all."""
    gaps = sorted(random.Random(length).sample(range(1, len(pan)), length - len(pan)))
    out, last = [], 0
    for gap in gaps:
        out.append(pan[last:gap])
        last = gap
    out.append(pan[last:])
    return sep.join(out)


def test_pan_in_card_token_is_masked_whatever_its_length(
    warm_bootstrap: str, make_topics: Callable[..., Topics], spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """A card_token that is a card number written with separators is rejected (PAN_IN_CARD_TOKEN) whatever
    its length; its dead letter must never carry the number whole. In Avro binary a string of 24..28
    characters is preceded by its length byte 0x30..0x38 -- an ASCII digit -- which joins the card number's
    digit run, so a byte scrubber that only masks Luhn-valid runs of 13-19 digits misses it."""
    bootstrap = warm_bootstrap
    topics = make_topics(bootstrap, 1)
    app = app_of(topics)
    rng = random.Random(5)
    t0 = 1_767_225_600_000
    tokens: dict[str, str] = {}
    for length in range(19, 32):
        pan = luhn_pan(rng, "4", 16)
        tokens[_separated(pan, length, rng.choice("- "))] = pan
    lines = []
    for i, token in enumerate(tokens):
        assert is_pan(token), token
        record = {
            "event_id": f"e{i}",
            "order_id": f"o{i}",
            "merchant_id": "m1",
            "terminal_id": "t1",
            "event_type": "AUTH_APPROVED",
            "amount_minor": 100,
            "currency": "EUR",
            "card_token": token,
            "event_time": t0 + i,
            "attempt": 1,
            "decline_code": None,
        }
        lines.append(json.dumps({"source": "terminal", "ingest_time": t0 + i, "record": record}))
    feeder = Feeder(bootstrap, topics)
    assert feeder.feed(lines) == len(tokens)
    worker = spawn(bootstrap, topics, app, "w0")
    src = tmp_path / "pans.jsonl"
    src.write_text("\n".join(lines) + "\n")
    check = check_exactly_once(bootstrap, topics, app, replay_oracle(src, tmp_path / "replay", 1), alive=worker.alive)
    assert worker.stop() == 0
    assert check.ok, check.explain()
    letters = check.outputs.deadletters
    assert [d.headers["reason"] for d in letters] == ["PAN_IN_CARD_TOKEN"] * len(tokens)
    leaked = {
        len(token): token for token, pan in tokens.items() if any(contains_any(d.value or b"", [pan]) for d in letters)
    }
    assert not leaked, (
        f"dead letters carry the whole card number for card_token lengths {sorted(leaked)} "
        f"(e.g. {next(iter(leaked.values()))!r}); the Avro length byte before them is an ASCII digit"
    )
