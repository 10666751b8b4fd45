"""The console's reconciliation and analytics pages in headless Chromium against the whole
stack: purchases paid on the Cashfree sandbox, one refunded; a settlement amount planted
through the sandbox's control API and found by a gateway reconciliation; a finance admin
sees the finding, explains it and then resolves it through the page (the trail and the audit
log name them); the analytics page's figures equal the API's. With CONSOLE_SCREENSHOTS set
to a folder, the pages are saved there (`scripts/console-screenshots.py`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from commdesk_billing import wiring
from commdesk_billing.modules.analytics.periods import today
from commdesk_billing.modules.invoices.words import rupees
from commdesk_billing.modules.reconciliation.model import Source
from commdesk_billing.modules.reconciliation.runner import run
from commdesk_billing.security.jwt import Role
from tests.console.conftest import CSRF_SECRET, PASSWORD, make_staff
from tests.console.test_browser import _shooter
from tests.gateway.sandbox.test_checkout import chromium_driver_or_skip
from tests.harness.stack import Stack


@pytest.fixture
def chromium() -> Iterator[object]:
    yield from chromium_driver_or_skip()


async def _purchases(stack: Stack) -> list[dict[str, Any]]:
    """Three credited purchases, one failed attempt, one refund paid back."""
    bought = [(await stack.credited())[1] for _ in range(3)]
    tok = stack.token()
    failed = await stack.buy(tok)
    await stack.pay(failed, outcome="failure")
    await stack.wait_status(tok, failed["id"], {"FAILED"})
    refund = await stack.refund(bought[0]["id"], amount_paise=5_000, reason="goodwill")
    assert refund.status_code == 202, refund.text
    await stack.wait_refund(refund.json()["id"], {"SUCCESS"})
    return bought


async def _plant_amount_mismatch(stack: Stack, payment: dict[str, Any]) -> str:
    """Cashfree's settlement report says ₹10.00 less than the payment: the reconciler's
    `amount_differs` finding, its reference `payment:<order id>`."""
    cf = await stack.scalar(
        "SELECT cashfree_payment_id FROM payments WHERE id = :id", id=uuid.UUID(payment["id"])
    )
    planted = await stack.sandbox.post(
        f"/_sandbox/recon/events/{cf}",
        json={"action": "amount", "amount_paise": int(payment["amount_paise"]) - 1_000},
    )
    assert planted.status_code == 200, planted.text
    settled = await stack.sandbox.post("/_sandbox/settlements/run")
    assert settled.status_code == 200, settled.text
    summary = await run(
        stack.engine,
        stack.settings.model_copy(update={"reconciliation_settle_days": 0}),
        checks=wiring.verify_checks(),
        sources=[Source.gateway],
    )
    [gateway] = summary.sources
    assert (gateway.mismatches, gateway.opened, gateway.error) == (1, 1, None)
    return f"payment:{payment['order_id']}"


@pytest.mark.slow
async def test_a_finance_admin_closes_a_finding_and_reads_analytics_in_the_browser(
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
    stack: Stack = await stacks(csrf_secret=CSRF_SECRET, reconciliation_grace_s=0.0)
    admin = await make_staff(stack.engine, "finance_admin", "asha.finance@commdesk.test")
    auditor = await make_staff(stack.engine, "auditor", "meera.audit@commdesk.test")
    bought = await _purchases(stack)
    reference = await _plant_amount_mismatch(stack, bought[1])
    finding_id = await stack.scalar(
        "SELECT id FROM reconciliation_findings WHERE reference = :r", r=reference
    )
    base = stack.api_url

    def wait_for(element_id: str) -> Any:
        try:
            return WebDriverWait(driver, 20).until(
                ec.presence_of_element_located((By.ID, element_id))
            )
        except TimeoutException:
            body = driver.find_element(By.TAG_NAME, "body").text[:1000]
            raise AssertionError(f"no #{element_id} on {driver.current_url}: {body}") from None

    def sign_in(email: str) -> None:
        driver.get(f"{base}/console")
        wait_for("sign-in")
        driver.find_element(By.ID, "email").send_keys(email)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "sign-in").click()
        wait_for("signed-in-as")

    def close_the_finding() -> dict[str, str]:
        sign_in(admin)
        driver.find_element(By.LINK_TEXT, "Reconciliation").click()
        wait_for("findings")
        listed = driver.find_element(By.ID, "findings").text
        shoot("10-findings")
        driver.find_element(By.LINK_TEXT, reference).click()
        wait_for("explain-form")
        facts = driver.find_element(By.ID, "finding-facts").text
        shoot("11-finding")
        driver.find_element(By.ID, "explain-note").send_keys(
            "Cashfree held back ₹10.00 for a chargeback fee; confirmed by their support"
        )
        driver.find_element(By.ID, "explain-submit").click()
        explained = wait_for("notice").text
        state_after_explain = driver.find_element(By.ID, "finding-state").text
        driver.find_element(By.ID, "resolve-note").send_keys(
            "Fee booked by journal; Cashfree ticket 48213 closed"
        )
        driver.find_element(By.ID, "resolve-submit").click()
        resolved = wait_for("notice").text
        wait_for("closed")
        shoot("12-finding-resolved")
        return {
            "listed": listed,
            "facts": facts,
            "explained": f"{explained} {state_after_explain}",
            "resolved": f"{resolved} {driver.find_element(By.ID, 'finding-state').text}",
            "trail": driver.find_element(By.ID, "trail").text,
        }

    seen = await asyncio.to_thread(close_the_finding)
    assert reference in seen["listed"] and "amount differs" in seen["listed"]
    assert "₹300.00" in seen["facts"] and "₹290.00" in seen["facts"]
    assert "Difference\n-₹10.00" in seen["facts"]
    assert seen["explained"] == "Finding explained. explained"
    assert seen["resolved"] == "Finding resolved. resolved"
    assert "ticket 48213" in seen["trail"] and f"console:{admin}" in seen["trail"]
    async with stack.engine.connect() as conn:
        audited = (
            await conn.execute(
                text(
                    "SELECT action, actor_sub, actor_role, channel FROM audit_logs"
                    " WHERE target_id = :f ORDER BY created_at, id"
                ),
                {"f": str(finding_id)},
            )
        ).all()
    assert [tuple(r) for r in audited] == [
        ("reconciliation.finding.explained", f"console:{admin}", "finance_admin", "http"),
        ("reconciliation.finding.resolved", f"console:{admin}", "finance_admin", "http"),
    ]

    def analytics() -> dict[str, str]:
        driver.find_element(By.LINK_TEXT, "Analytics").click()
        wait_for("chart-payments")
        shown = {
            key: driver.find_element(By.ID, key).text
            for key in ("fig-collected", "fig-refunded", "fig-success-rate", "fig-payments")
        }
        shown["bars"] = str(len(driver.find_elements(By.CSS_SELECTOR, "#chart-payments rect")))
        shoot("13-analytics")
        return shown

    figures = await asyncio.to_thread(analytics)
    last = today()
    period = {"from": str(last - timedelta(days=29)), "to": str(last)}  # the page's default
    summary = await stack.api.get(
        "/v1/analytics/summary",
        params=period,
        headers={"Authorization": f"Bearer {stack.token('auditor-1', Role.auditor)}"},
    )
    assert summary.status_code == 200, summary.text
    totals = summary.json()["totals"]
    # Three ₹300.00 purchases in, ₹50.00 back; 3 of 4 finished attempts paid.
    assert (totals["collected_paise"], totals["refunded_paise"]) == (90_000, 5_000)
    assert figures["fig-collected"] == f"₹{rupees(totals['collected_paise'])}" == "₹900.00"
    assert figures["fig-refunded"] == f"₹{rupees(totals['refunded_paise'])}"
    assert figures["fig-payments"] == str(totals["payments_succeeded"]) == "3"
    assert totals["success_rate_bp"] == 7_500 and figures["fig-success-rate"] == "75.00 %"
    assert figures["bars"] == "2"  # today's bar: paid and failed stacked

    def auditor_reads_only() -> str:
        driver.find_element(By.ID, "sign-out").click()
        wait_for("sign-in")
        sign_in(auditor)
        driver.get(f"{base}/console/findings/{finding_id}")
        return str(wait_for("read-only").text)

    assert "Read only" in await asyncio.to_thread(auditor_reads_only)
