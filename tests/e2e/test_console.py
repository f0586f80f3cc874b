"""The web console end to end, in headless Debian Chromium (playwright with executable_path; never
`playwright install`): a real broker, a worker reconciling simulated input into alerts, `posrecon console` (the
case stage + API + console) with the worker's URL. An operator signs in, filters the queue, opens a case (its
order timeline comes from the worker), resolves it, and the RESOLVE arrives on pos.exceptions (read_committed)
with the case RESOLVED and the operator as actor. A viewer's attempt to act is refused (403, shown). No page
shows a card number. Screenshots: docs/console-queue.png, docs/console-case.png, docs/console-aging.png."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caseskit import (
    HOUR,
    OPERATOR,
    VIEWER,
    CasesProcess,
    ExceptionsReader,
    alert,
    call,
    produce_alerts,
    tokens_file,
    wait_until,
)
from livekit import WorkerProcess, drain, feed_file, mixed_input
from posrecon.config import Topics
from posrecon.engine.pan import find_pan
from posrecon.net import find_free_port

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")

pytestmark = pytest.mark.broker
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
RECENT = [
    ("MISSING_SETTLEMENT", "WARNING", 0.2),
    ("AMOUNT_MISMATCH", "CRITICAL", 0.5),
    ("LATE_SETTLEMENT", "INFO", 2),
    ("MISSING_SETTLEMENT", "WARNING", 3),
    ("STATUS_CONFLICT", "CRITICAL", 6),
    ("FEE_MISMATCH", "WARNING", 9),
    ("ORPHAN_SETTLEMENT", "WARNING", 30),
    ("EXPIRED_ORDER", "INFO", 50),
]
TEST_PAN = "4111111111111111"  # in the simulated input's invalid events (card number as card token)


@pytest.fixture
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} missing: `make tools` installs the Debian package chromium")
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def no_card_number(page: Any) -> str:
    text: str = page.inner_text("body")
    assert find_pan(text) is None and TEST_PAN not in text, "a card number is visible"
    return text


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(f"{base}/console/")
    page.fill("#token", token)
    page.click("#login-button")
    page.wait_for_selector("#queue")


def test_an_operator_works_a_case_to_closure_in_the_browser(
    bootstrap: str, fresh_topics: Any, tmp_path: Path, browser: Any
) -> None:
    topics: Topics = fresh_topics(3)
    tokens = tokens_file(tmp_path)
    worker_port = find_free_port()
    app_id = f"console-{topics.alerts.rsplit('.', 1)[-1]}"
    worker = WorkerProcess(
        bootstrap,
        topics,
        app_id,
        "w1",
        tmp_path,
        ["--no-wall-clock-advance", "--ops-port", str(worker_port), "--tokens-file", str(tokens)],
    )
    console = CasesProcess(
        bootstrap,
        topics,
        app_id,
        tmp_path,
        tokens,
        ["--worker-url", f"http://127.0.0.1:{worker_port}"],
        command="console",
    )
    reader = ExceptionsReader(bootstrap, topics)
    try:
        console.wait_ready()
        feed_file(bootstrap, topics, mixed_input(tmp_path / "input.jsonl", 120, seed=11))
        drain(bootstrap, topics, app_id)
        queue = wait_until(
            lambda: (
                call(f"{console.base}/cases?limit=500", token=VIEWER)[1]["total"] > 20
                and call(f"{console.base}/cases?limit=500", token=VIEWER)[1]
            ),
            what="cases from the worker",
        )
        kinds = queue["by_kind"]
        kind = next(k for k in ("AMOUNT_MISMATCH", "MISSING_SETTLEMENT", "LATE_SETTLEMENT") if k in kinds)
        page = browser.new_page(viewport={"width": 1280, "height": 860})

        sign_in(page, console.base, OPERATOR)
        assert page.inner_text("#whoami") == "alice (operator)"
        page.click("th.sortable:has-text('Severity')")
        page.wait_for_selector("th.sortable:has-text('Severity ▾')")
        first = page.locator("#queue tbody tr").first.locator(".sev").inner_text()
        assert first == "CRITICAL" if "CRITICAL" in page.inner_text("#queue") else True
        page.screenshot(path=str(DOCS / "console-queue.png"), full_page=False)
        no_card_number(page)

        page.click(f"button.chip[data-kind='{kind}']")  # filter by kind with its count chip
        page.wait_for_selector(f"button.chip.on[data-kind='{kind}']")
        rows = page.locator("#queue tbody tr")
        assert rows.count() == kinds[kind]
        assert {rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())} == {kind}
        alert_id = rows.first.get_attribute("data-alert")
        rows.first.locator("a").click()
        page.wait_for_selector("#timeline")
        assert page.inner_text("[data-field='State']") == "OPEN"
        timeline = page.inner_text("#timeline")
        assert "AUTH_APPROVED" in timeline and "OPEN by posrecon" in timeline  # the worker's order + the case
        page.fill("#a-note", "checked with the acquirer: settled by hand")
        page.screenshot(path=str(DOCS / "console-case.png"), full_page=True)
        page.click("#act-resolve")
        page.wait_for_selector("#message:has-text('RESOLVE recorded: the case is RESOLVED')", timeout=60_000)
        assert page.inner_text("[data-field='State']") == "RESOLVED"
        no_card_number(page)

        record = reader.wait_for(lambda r: r["alert_id"] == alert_id and r["state"] == "RESOLVED")
        last = record["history"][-1]
        assert (last["action"], last["actor"], last["accepted"]) == ("RESOLVE", "alice", True)
        assert last["note"] == "checked with the acquirer: settled by hand"

        # a few recent alerts (the simulated input is months old): the aging chart then shows every bucket
        recent = [
            alert(f"recent-{i}", kind, sev, f"o-recent-{i}", "m1", age_ms=int(hours * HOUR))
            for i, (kind, sev, hours) in enumerate(RECENT)
        ]
        recent.append(alert("recent-batch", "BATCH_MISMATCH", "CRITICAL", None, "m1", age_ms=HOUR, batch_id="b-e2e"))
        produce_alerts(bootstrap, topics, recent)
        reader.wait_for(lambda r: r["alert_id"] == "recent-batch")
        page.fill("#batch-id", "b-e2e")  # the batch page: its cases (and the worker's view of the batch)
        page.click("#batch-jump button")
        page.wait_for_selector("#batch-cases a:has-text('recent-batch')")
        page.goto(f"{console.base}/console/#/aging")
        page.wait_for_selector("#aging-chart rect")
        page.screenshot(path=str(DOCS / "console-aging.png"), full_page=False)
        invalid = call(f"{console.base}/cases?kind=INVALID_EVENT", token=VIEWER)[1]["items"]
        assert invalid  # the simulated input's events with a card number as card token: their cases show none
        page.goto(f"{console.base}/console/#/case/{invalid[0]['alert_id']}")
        page.wait_for_selector("#timeline")
        assert "PAN_IN_CARD_TOKEN" in no_card_number(page)

        viewer = browser.new_page()
        sign_in(viewer, console.base, VIEWER)
        other = call(f"{console.base}/cases?state=OPEN&limit=1", token=VIEWER)[1]["items"][0]
        viewer.goto(f"{console.base}/console/#/case/{other['alert_id']}")
        viewer.wait_for_selector("#timeline")
        viewer.click("#act-acknowledge")
        viewer.wait_for_selector("#message.error:has-text('Not allowed')")
        assert call(f"{console.base}/cases/{other['alert_id']}", token=VIEWER)[1]["case"]["version"] == other["version"]
        assert re.search(r"operator token is needed", viewer.inner_text("#message"))
    finally:
        reader.close()
        console.stop()
        worker.stop()
