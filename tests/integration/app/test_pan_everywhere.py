"""G7 on a live worker: card numbers injected into every string field of every input record type never come out.

Traffic: a v2 simulation (its merchant pricing in posrecon.toml, given to the worker and the replay oracle alike)
with one card number per injected record mixed in: each string field of TerminalEvent, SettlementNotice and
SettlementBatch (the worker reads ``pos.settlement-batches``) gets two, one as the whole value and one inside an
id (``ord-<card number>``), in the plain, spaced and dashed forms, over the networks of engine/pan.py
(card_token: whole values only, the only form its v1 rule PAN_IN_CARD_TOKEN covers).

Scanned, after the worker drained the input: the raw bytes (read_uncommitted, so aborted transactions too) of
every topic of this test's app on the broker, found by listing them (outputs, dead letters, changelogs, the
card and batch sighting repartitions, pos.exceptions and whatever a later version adds), except the three input
topics the numbers were written to; the worker's log (stdout and stderr); and the ops API's responses (orders and
batches by their masked id, /pending, /metrics). Two searches:

* each injected number, as bare digits inside the text with every space and dash removed, and in its injected
  form: none may appear;
* a generic one for any card number (a maximal 13-19 digit run, single spaces or dashes allowed, with a network
  prefix and passing Luhn), the simulation's own card-number ids included. Hex runs of 32 characters or more
  (alert ids, hashes) are blanked first: a hash has a Luhn-valid run with a network prefix about once in 20,000
  ids by chance, and it is not a card number that came in.

Outputs must still equal the replay oracle, and an id that was a card number must come out masked
(the INVALID_EVENT alert's order_id / batch_id is the injected value with all but the last four digits hidden).

A lookup by the raw card number (``GET /orders/<card number>``, ``GET /batches/<card number>``) is its own test: the
404 body names the id asked for only masked (it echoed it whole until the ops API passed it through scrub_text).

Mutation check: ``POSRECON_PAN_SCAN_FIELDS=currency`` (the scan narrowed to one field, in the worker and the
oracle) makes the test fail.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import pytest
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "chaos"))  # leakkit, chaoskit (the leak search)

from leakkit import contains_any, luhn_pan, message_bytes, raw_dump

from livekit import (
    Verdict,
    app_of,
    drain,
    feed_file,
    ops_worker,
    read_all,
    replay_oracle,
    simulate,
    verify,
)
from posrecon.config import Topics
from posrecon.engine.pan import has_network_prefix, luhn_valid, scrub_text
from posrecon.kafka.outputs import Outputs
from posrecon.kafka.topics import create_topics
from posrecon.sim.command import CONFIG_FILE
from scenario import note, term

pytestmark = pytest.mark.broker
PARTITIONS = 2
TOKEN = "viewer-token-pan-everywhere"
# (prefix, length): Visa, Mastercard (both ranges), Amex, Discover, JCB, Diners, UnionPay
NETWORKS = [
    ("4", 16),
    ("4", 19),
    ("51", 16),
    ("2221", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("3528", 16),
    ("36", 14),
    ("300", 14),
    ("62", 19),
]
FIELDS = {
    "terminal": ("event_id", "order_id", "merchant_id", "terminal_id", "currency", "card_token", "decline_code"),
    "settlement": ("notice_id", "order_id", "merchant_id", "currency", "batch_id"),
    "batch": ("batch_id", "merchant_id", "currency"),
}
ROUTES = {"order_id": "/orders/", "batch_id": "/batches/"}  # ops API lookups by id
_HEX_ID = re.compile(rb"[0-9a-fA-F]{32,}")
_CARD_RUN = re.compile(rb"[0-9](?:[ -]?[0-9]){12,}")


def formatted(pan: str, form: str) -> str:
    if form == "plain":
        return pan
    groups = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
    return groups if form == "spaced" else groups.replace(" ", "-")


class Injection:
    """One card number written into one field of one input record."""

    def __init__(self, source: str, field: str, pan: str, value: str) -> None:
        self.source, self.field, self.pan, self.value = source, field, pan, value
        self.masked = scrub_text(value)  # what an echo of the value must look like

    def __repr__(self) -> str:  # the digits stay out of pytest's report
        return f"Injection({self.source}.{self.field}, masked={self.masked!r})"


def injected_record(inj: Injection, k: int, t: int) -> dict[str, Any]:
    order = f"pan-{k}"
    if inj.source == "terminal":
        kind = {"card_token": "AUTH_APPROVED", "decline_code": "AUTH_DECLINED"}.get(inj.field, "ORDER_CREATED")
        line = term(order, kind, t, card=f"tok_pan_{k}", decline_code="05" if kind == "AUTH_DECLINED" else None)
    elif inj.source == "settlement":
        line = note(order, "SETTLED", t, batch=f"bat-pan-{k}")
    else:
        line = {
            "source": "batch",
            "record": {
                "batch_id": f"bat-pan-{k}",
                "merchant_id": "m1",
                "currency": "EUR",
                "notice_count": 1,
                "gross_amount_minor": 1000,
                "fee_amount_minor": 0,
                "closed_at": t,
            },
        }
    line["record"][inj.field] = inj.value
    return {**line, "ingest_time": t}


def with_card_numbers(src: Path, dst: Path, seed: int) -> list[Injection]:
    """``src`` with the injected records mixed into its traffic, written to ``dst``."""
    rng = random.Random(seed)
    injections: list[Injection] = []
    for source, fields in FIELDS.items():
        for field in fields:
            for whole in (True, False):
                prefix, length = NETWORKS[len(injections) % len(NETWORKS)]
                pan = luhn_pan(rng, prefix, length)
                form = formatted(pan, ("plain", "spaced", "dashed")[len(injections) % 3])
                value = form if whole or field in ("card_token", "currency") else f"id-{form}"
                injections.append(Injection(source, field, pan, value))
    lines = src.read_text().splitlines()
    times = [doc["ingest_time"] for doc in map(_json_or_none, lines) if doc and type(doc.get("ingest_time")) is int]
    for k, inj in enumerate(injections):
        at = rng.randrange(len(lines) // 10, len(lines))
        t = times[min(len(times) - 1, at * len(times) // len(lines))]  # about the traffic's time at that line
        lines.insert(at, json.dumps(injected_record(inj, k, t)))
    dst.write_text("\n".join(lines) + "\n")
    return injections


def _json_or_none(text: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if type(doc) is dict else None


def card_numbers_in(data: bytes) -> set[str]:
    """Every card number in ``data`` (masked, so a failure report does not print it), hex ids blanked first."""
    blanked = _HEX_ID.sub(lambda m: b"#" * len(m.group(0)), data)
    found = set()
    for match in _CARD_RUN.finditer(blanked):
        digits = match.group(0).replace(b" ", b"").replace(b"-", b"").decode()
        if len(digits) <= 19 and has_network_prefix(digits) and luhn_valid(digits):
            found.add(f"{'*' * (len(digits) - 4)}{digits[-4:]} ({len(digits)} digits)")
    return found


def http_get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return f"{resp.status} ".encode() + bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return f"{exc.code} ".encode() + exc.read()


def ops_responses(base: str, metrics: str, injections: list[Injection], order_ids: list[str]) -> dict[str, bytes]:
    """The ops API's answers that could echo an injected value: orders and batches by their masked id, /pending,
    /metrics. Keyed by path (masked ids only: the keys show up in failure reports)."""
    paths = ["/healthz", "/readyz", "/pending", "/pending?older_than=0&limit=100000"]
    paths += [ROUTES[inj.field] + quote(inj.masked, safe="") for inj in injections if inj.field in ROUTES]
    paths += [f"/orders/{quote(o, safe='')}" for o in order_ids]
    answers = {path: http_get(base + path) for path in paths}
    answers["/metrics"] = http_get(metrics + "/metrics")
    return answers


def raw_id_responses(base: str, injections: list[Injection]) -> dict[str, bytes]:
    """The ops API's answers to a lookup by the raw card number (a client pasting what it has), keyed by the
    masked path."""
    return {
        ROUTES[inj.field] + inj.masked: http_get(base + ROUTES[inj.field] + quote(inj.value, safe=""))
        for inj in injections
        if inj.field in ROUTES
    }


def app_topics(bootstrap: str, topics: Topics, app: str) -> list[str]:
    """Every topic of this test's app on the broker (its tag or app id in the name), but its three inputs."""
    tag = topics.reconciled.rsplit(".", 1)[-1]
    names = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15).topics
    inputs = {topics.terminal, topics.settlement, topics.batches}
    return sorted(n for n in names if (n.endswith(f".{tag}") or n.startswith(f"{app}-")) and n not in inputs)


class Run(NamedTuple):
    """One live run over the traffic with card numbers: what came out and what was injected."""

    topics: Topics
    app: str
    injections: list[Injection]
    outputs: Outputs
    verdict: Verdict
    log: str
    answers: dict[str, bytes]
    raw_id_answers: dict[str, bytes]


@pytest.fixture(scope="module")
def run(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp_path = tmp_path_factory.mktemp("pan-everywhere")
    sim = simulate(tmp_path / "sim", 400, seed=23, partitions=PARTITIONS)
    config = tmp_path / "sim" / CONFIG_FILE
    src = tmp_path / "input.jsonl"
    injections = with_card_numbers(sim, src, seed=23)
    tag = f"t{uuid.uuid4().hex[:10]}"  # as the fresh_topics fixture names them (a function-scoped fixture)
    topics = Topics(**{f.name: f"{getattr(Topics(), f.name)}.{tag}" for f in dataclasses.fields(Topics)})
    create_topics(bootstrap, topics, partitions=PARTITIONS)
    app = app_of(topics)
    feed_file(bootstrap, topics, src)
    worker, ops, metrics = ops_worker(bootstrap, topics, tmp_path, TOKEN, config=config)
    oracle = replay_oracle(src, tmp_path / "replay", PARTITIONS, config=config)
    base = f"http://127.0.0.1:{ops}"
    try:
        drain(bootstrap, topics, app)
        open_orders = [r["order_id"] for r in oracle.reconciled[:20]] + ["pan-0", "ord-unknown"]
        answers = ops_responses(base, f"http://127.0.0.1:{metrics}", injections, open_orders)
        raw_id_answers = raw_id_responses(base, injections)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    outputs = read_all(bootstrap, topics)
    return Run(topics, app, injections, outputs, verify(outputs, oracle), worker.log(), answers, raw_id_answers)


def test_no_injected_card_number_leaves_the_worker(bootstrap: str, run: Run) -> None:
    topics, app, injections, outputs = run.topics, run.app, run.injections, run.outputs
    pans = {inj.pan for inj in injections}
    assert run.verdict.ok, run.verdict.problems

    # the haystacks: every byte of every topic of the app but the inputs, the log, every ops API answer
    scanned = app_topics(bootstrap, topics, app)
    expected = {
        topics.reconciled,
        topics.alerts,
        topics.deadletter,
        topics.batch_reconciled,
        f"{app}-card-sightings",
        f"{app}-order-state-changelog",
        f"{app}-card-state-changelog",
        f"{app}-batch-sightings",
        f"{app}-batch-changelog",
    }
    assert expected <= set(scanned), sorted(expected - set(scanned))
    haystacks = {f"topic {name}": b"\n".join(map(message_bytes, raw_dump(bootstrap, name))) for name in scanned}
    assert sum(map(len, haystacks.values())) > 100_000, {k: len(v) for k, v in haystacks.items()}
    haystacks["worker log"] = run.log.encode()
    haystacks.update({f"GET {path}": body for path, body in run.answers.items()})
    leaks = {where: len(contains_any(data, pans)) for where, data in haystacks.items() if contains_any(data, pans)}
    assert not leaks, f"injected card numbers found (count per place): {leaks}"
    generic = {where: card_numbers_in(data) for where, data in haystacks.items() if card_numbers_in(data)}
    assert not generic, f"card numbers found: {generic}"

    # an id that was a card number comes out masked
    invalid = [a.value for a in outputs.alerts if a.value["kind"] == "INVALID_EVENT"]
    for inj in injections:
        if inj.field == "order_id":
            assert any(a["order_id"] == inj.masked for a in invalid), inj
        if inj.field == "batch_id" and inj.source == "batch":
            assert any(a["batch_id"] == inj.masked for a in invalid), inj
    # the search is able to find them: in each injected form, and in the raw bytes of the input topics
    assert all(contains_any(inj.value.encode(), {inj.pan}) for inj in injections)
    written = b"\n".join(
        message_bytes(m)
        for name in (topics.terminal, topics.settlement, topics.batches)
        for m in raw_dump(bootstrap, name)
    )
    assert contains_any(written, pans) == pans


def test_a_lookup_by_card_number_does_not_echo_it(run: Run) -> None:
    pans = {inj.pan for inj in run.injections}
    leaks = sorted(path for path, body in run.raw_id_answers.items() if contains_any(body, pans))
    assert not leaks, f"answers echoing the card number asked for: {leaks}"
