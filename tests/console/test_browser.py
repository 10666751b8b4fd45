"""The console in headless Chromium against the whole stack (the Cashfree sandbox, our API,
a worker): a finance admin signs in, finds a purchase, refunds part of it and sees the
credit note; replays a dead letter; a member's session is refused; a form post without the
CSRF token is refused. With CONSOLE_SCREENSHOTS set to a folder, every page is saved there
as PNG (`scripts/console-screenshots.py` writes docs/console/)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from sqlalchemy import text

from commdesk_billing.modules.invoices.words import rupees
from commdesk_billing.queues.envelope import new_envelope
from commdesk_billing.queues.topology import Names
from tests.console.conftest import CSRF_SECRET, PASSWORD, make_staff
from tests.gateway.sandbox.test_checkout import chromium_driver_or_skip
from tests.harness.stack import FRAUD_RULES_OFF, Stack
from tests.modules.settlements.helpers import earn, make_payee, settle_run

SHOTS = os.environ.get("CONSOLE_SCREENSHOTS")


@pytest.fixture
def chromium() -> Iterator[object]:
    yield from chromium_driver_or_skip()


def _shooter(driver: Any) -> Callable[[str], None]:
    def shoot(name: str) -> None:
        if not SHOTS:
            return
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        # The whole page, not the first screenful: the viewport made as tall as the
        # document (through the DevTools protocol: a headless window is capped in height).
        height = driver.execute_script("return document.documentElement.scrollHeight")
        metrics = {"width": 1280, "height": max(720, min(int(height), 4000))}
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {**metrics, "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            driver.save_screenshot(str(Path(SHOTS) / f"{name}.png"))
        finally:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    return shoot


async def _dead_letter(stack: Stack) -> str:
    """A message a consumer gave up on, parked in analytics.billing's dead-letter queue."""
    env = new_envelope("payment.credited", {"payment_id": str(uuid.uuid4())})
    names = Names(stack.settings.rabbitmq_queue_prefix, len(stack.settings.retry_delays_s))
    connection = await aio_pika.connect(stack.settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(
                env.encode(),
                message_id=str(env.id),
                headers={
                    "x-reason": "handler_error",
                    "x-detail": "KeyError: 'user_id'",
                    "x-attempts": 4,
                    "x-dead-lettered-at": "2026-12-07T09:00:00+00:00",
                },
            ),
            routing_key=names.dlq("analytics.billing"),
        )
    return str(env.id)


async def _held_for_review(stack: Stack) -> str:
    """A buyer's second purchase, paid and held by fraud scoring for a person to decide."""
    tok = stack.token()
    for _ in range(2):
        order = await stack.buy(tok)
        await stack.pay(order)
        await stack.wait_status(tok, order["id"], {"CREDITED"})
    held = await stack.scalar(
        "SELECT status FROM fraud_reviews WHERE payment_id = :p", p=uuid.UUID(order["id"])
    )
    assert held == "pending"
    return str(order["id"])


@pytest.mark.slow
async def test_a_finance_admin_refunds_part_of_a_purchase_in_the_browser(
    stacks: Any, chromium: object
) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(chromium, WebDriver)
    driver = chromium
    driver.set_window_size(1280, 900)
    shoot = _shooter(driver)
    # One rule on: a buyer's second order within the window is held for review.
    stack: Stack = await stacks(
        csrf_secret=CSRF_SECRET,
        **{**FRAUD_RULES_OFF, "fraud_user_velocity_max": 1, "fraud_user_velocity_weight": 60},
    )
    admin = await make_staff(stack.engine, "finance_admin", "asha.finance@commdesk.test")
    member = await make_staff(stack.engine, "member", f"m-{uuid.uuid4().hex[:6]}@commdesk.test")
    _tok, payment = await stack.credited()
    order_id, payment_id = payment["order_id"], payment["id"]
    message_id = await _dead_letter(stack)
    held_id = await _held_for_review(stack)
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, 100_000)
    [settled] = await settle_run(
        stack.engine,
        stack.settings,
        by="test",
        payee_id=payee.id,
        period=f"2026-12-w1-{uuid.uuid4().hex[:6]}",
        cut_off=datetime.now(UTC),
    )
    assert settled.created
    base = stack.api_url

    def wait_for(element_id: str) -> Any:
        try:
            return WebDriverWait(driver, 20).until(
                ec.presence_of_element_located((By.ID, element_id))
            )
        except TimeoutException:
            text = driver.find_element(By.TAG_NAME, "body").text[:1000]
            raise AssertionError(f"no #{element_id} on {driver.current_url}: {text}") from None

    def sign_in(email: str, shot: str | None = None) -> None:
        driver.get(f"{base}/console")  # redirected to the sign-in page
        wait_for("sign-in")
        driver.find_element(By.ID, "email").send_keys(email)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        if shot:
            shoot(shot)
        driver.find_element(By.ID, "sign-in").click()

    def find_and_refund() -> tuple[str, str]:
        sign_in(admin, "01-sign-in")
        wait_for("signed-in-as")
        assert driver.find_element(By.ID, "signed-in-as").text == admin
        shoot("02-home")
        driver.get(f"{base}/console/payments")
        driver.find_element(By.ID, "order_id").send_keys(order_id)
        driver.find_element(By.ID, "search").click()
        wait_for("results")
        shoot("03-payments-search")
        driver.find_element(By.LINK_TEXT, order_id).click()
        wait_for("refund-form")
        before = driver.find_element(By.ID, "refundable").text
        driver.find_element(By.ID, "refund-amount").send_keys("100")
        driver.find_element(By.ID, "refund-reason").send_keys("partial goodwill refund")
        driver.find_element(By.ID, "refund-submit").click()
        notice = wait_for("notice").text
        return before, notice

    before, notice = await asyncio.to_thread(find_and_refund)
    assert (before, notice) == ("₹300.00", "Refund requested.")
    refund_id = await stack.scalar(
        "SELECT id FROM refunds WHERE payment_id = :p", p=uuid.UUID(payment_id)
    )
    refund = await stack.wait_refund(str(refund_id), {"SUCCESS"})
    assert refund["amount_paise"] == 10_000 and refund["requested_by"] == f"console:{admin}"

    def credit_note_shown() -> dict[str, str]:
        deadline = time.monotonic() + 30
        while True:
            driver.get(f"{base}/console/payments/{payment_id}")
            rows = driver.find_elements(By.CSS_SELECTOR, "#documents tr.doc-credit_note td")
            if rows or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert rows, "no credit note on the payment page"
        shoot("04-payment-detail")
        refunds = driver.find_element(By.ID, "refunds").text
        kinds = [
            row.get_attribute("class")
            for row in driver.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
        ]
        return {
            "timeline": " ".join(k or "" for k in kinds),
            "note_total": rows[4].text,
            "refundable": driver.find_element(By.ID, "refundable").text,
            "refund_row": refunds,
        }

    shown = await asyncio.to_thread(credit_note_shown)
    assert shown["note_total"] == "₹100.00"
    # The page's timeline is the API's (`paymentstory`): the order first, then the
    # invoice, the refund and its credit note in that order.
    timeline = shown["timeline"].split()
    assert timeline[0] == "t-order_created", timeline
    steps = [timeline.index(f"t-{t}") for t in ("invoice", "refund_requested", "credit_note")]
    assert steps == sorted(steps), timeline
    assert shown["refundable"] == "₹200.00"
    assert "SUCCESS" in shown["refund_row"] and "partial goodwill refund" in shown["refund_row"]

    seen: dict[str, str] = {}
    cookies: dict[str, str] = {}

    def other_pages() -> tuple[str, str]:
        driver.get(f"{base}/console/reviews")
        wait_for("reviews")
        shoot("05-fraud-review")
        row = driver.find_element(By.XPATH, f"//tr[td/a[text()='{held_id}']]")
        row.find_element(By.NAME, "reason").send_keys("known member, verified by phone")
        row.find_element(By.CSS_SELECTOR, "button[value=release]").click()
        assert wait_for("notice").text == "Decision recorded."
        for path, name, marker in (
            ("/console/settlements", "06-settlements", "settlements"),
            ("/console/dead-letters?queue=analytics.billing", "07-dead-letters", "letters"),
        ):
            driver.get(base + path)
            seen[marker] = wait_for(marker).text
            shoot(name)
        driver.find_element(By.LINK_TEXT, message_id).click()
        wait_for("replay")
        shoot("08-dead-letter")
        driver.find_element(By.ID, "replay").click()
        replayed = wait_for("notice").text
        cookie = driver.get_cookie("cdb_console_session")
        csrf = driver.get_cookie("cdb_console_csrf")
        assert csrf is not None
        cookies["csrf"] = str(csrf["value"])
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        return replayed, str(cookie["value"])

    replayed, session = await asyncio.to_thread(other_pages)
    assert settled.settlement is not None
    net = f"₹{rupees(settled.settlement.net_paise)}"
    assert net in seen["settlements"] and settled.settlement.period in seen["settlements"]
    review = await stack.scalar(
        "SELECT status || ' ' || decided_by FROM fraud_reviews WHERE payment_id = :p",
        p=uuid.UUID(held_id),
    )
    assert review == f"released console:{admin}"
    assert replayed == "Replayed 1 message(s)."
    async with stack.engine.connect() as conn:
        entry = (
            await conn.execute(
                text(
                    "SELECT actor_sub, actor_role, details FROM audit_logs"
                    " WHERE action = 'dlq.replayed' AND target_id = 'analytics.billing'"
                )
            )
        ).one()
    assert (entry.actor_sub, entry.actor_role) == (f"console:{admin}", "finance_admin")
    assert entry.details == {"message_id": message_id, "replayed": 1, "skipped": 0}

    async def refunds_of_payment() -> int:
        return int(
            await stack.scalar(
                "SELECT count(*) FROM refunds WHERE payment_id = :p", p=uuid.UUID(payment_id)
            )
        )

    jar = f"cdb_console_session={session}; cdb_console_csrf={cookies['csrf']}"
    async with httpx.AsyncClient(
        base_url=base, headers={"Cookie": jar, "Origin": base}, timeout=30
    ) as c:
        url = f"/console/payments/{payment_id}/refunds"
        # A post carrying the session but not the CSRF token (as another site's form would).
        forged = await c.post(
            url, data={"amount": "50", "reason": "forged", "idempotency_key": str(uuid.uuid4())}
        )
        assert forged.status_code == 403 and forged.json()["code"] == "csrf_failed"
        assert await refunds_of_payment() == 1
        # The same form sent twice (a double click, a reload): one refund.
        form = {
            "csrf_token": cookies["csrf"],
            "amount": "50.00",
            "reason": "second goodwill",
            "idempotency_key": str(uuid.uuid4()),
        }
        first, second = await c.post(url, data=form), await c.post(url, data=form)
        assert (first.status_code, second.status_code) == (303, 303)
        assert await refunds_of_payment() == 2
        # More than is refundable now (₹150.00 after the two): the API's 422, on the page.
        too_much = await c.post(
            url, data={**form, "amount": "150.01", "idempotency_key": str(uuid.uuid4())}
        )
        assert too_much.status_code == 422 and 'id="error"' in too_much.text
        assert "₹150.00" in too_much.text and await refunds_of_payment() == 2
    async with stack.engine.connect() as conn:
        audited = (
            await conn.execute(
                text(
                    "SELECT actor_sub, actor_role, channel FROM audit_logs"
                    " WHERE action = 'refund.requested' AND target_id = :p"
                ),
                {"p": payment_id},
            )
        ).all()
    assert [tuple(r) for r in audited] == [(f"console:{admin}", "finance_admin", "http")] * 2

    def member_refused() -> str:
        driver.find_element(By.ID, "sign-out").click()
        wait_for("sign-in")
        sign_in(member)
        forbidden = wait_for("forbidden").text
        shoot("09-member-refused")
        driver.get(f"{base}/console/payments/{payment_id}")
        wait_for("forbidden")
        return forbidden

    assert await asyncio.to_thread(member_refused) == "Not allowed"
