"""The hosted checkout, driven over plain HTTP (as our demo does) and in headless Chromium."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

import httpx
import pytest

from commdesk_billing.gateway.sandbox import checkout_url
from tests.gateway.sandbox.conftest import unique
from tests.gateway.sandbox.helpers import create_order, fetch_order
from tests.gateway.sandbox.servers import Receiver
from tests.gateway.sandbox.strict_models import PaymentEntity, parse
from tests.gateway.sandbox.webhook_checks import payment_hook

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def field(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert match, f"no #{element_id} in page"
    return match.group(1)


async def test_checkout_page_shows_the_order_and_the_form(
    api: httpx.AsyncClient, sandbox_url: str
) -> None:
    order = await create_order(api, amount=300)
    async with httpx.AsyncClient() as client:
        page = await client.get(checkout_url(sandbox_url, order.payment_session_id))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert field(html, "order-id") == order.order_id
    assert field(html, "order-amount") == "INR 300.00"
    for control in (
        'name="payment_session_id"',
        'id="method-upi"',
        'id="method-card"',
        'id="method-netbanking"',
        'id="outcome-success"',
        'id="outcome-failure"',
        'id="outcome-user_dropped"',
        'id="pay-button"',
        'action="/pg/view/checkout"',
    ):
        assert control in html
    assert "<script" not in html and "http" not in html.split("<body>")[1]


@pytest.mark.parametrize("method", ["upi", "card", "netbanking"])
@pytest.mark.parametrize(
    ("outcome", "status", "event"),
    [
        ("success", "SUCCESS", "PAYMENT_SUCCESS_WEBHOOK"),
        ("failure", "FAILED", "PAYMENT_FAILED_WEBHOOK"),
        ("user_dropped", "USER_DROPPED", "PAYMENT_USER_DROPPED_WEBHOOK"),
    ],
)
async def test_posting_the_form_over_http(
    api: httpx.AsyncClient,
    receiver: Receiver,
    sandbox_url: str,
    method: str,
    outcome: str,
    status: str,
    event: str,
) -> None:
    name = unique("form")
    order = await create_order(api, notify_url=receiver.hook(name))
    async with httpx.AsyncClient(base_url=sandbox_url) as browserless:
        result = await browserless.post(
            "/pg/view/checkout",
            data={
                "payment_session_id": order.payment_session_id,
                "payment_method": method,
                "outcome": outcome,
            },
        )
    assert result.status_code == 200
    assert field(result.text, "payment-status") == status
    cf_payment_id = field(result.text, "cf-payment-id")
    want_link = f'id="return-link" href="https://merchant.example/return?order_id={order.order_id}"'
    assert want_link in result.text
    payment = parse(
        PaymentEntity,
        (await api.get(f"/pg/orders/{order.order_id}/payments/{cf_payment_id}")).content,
    )
    assert payment.payment_status == status
    assert (await fetch_order(api, order.order_id)).order_status == (
        "PAID" if status == "SUCCESS" else "ACTIVE"
    )
    (hook,) = await receiver.wait_for(name, 1)
    assert payment_hook(hook).type == event


async def test_form_problems_are_shown(api: httpx.AsyncClient, sandbox_url: str) -> None:
    order = await create_order(api)
    async with httpx.AsyncClient(base_url=sandbox_url) as client:
        missing = await client.post(
            "/pg/view/checkout", data={"payment_session_id": order.payment_session_id}
        )
        unknown = await client.get("/pg/view/checkout", params={"payment_session_id": "session_x"})
        await client.post(
            "/pg/view/checkout",
            data={
                "payment_session_id": order.payment_session_id,
                "payment_method": "upi",
                "outcome": "success",
            },
        )
        paid_page = await client.get(checkout_url(sandbox_url, order.payment_session_id))
    assert missing.status_code == 400 and 'id="error"' in missing.text
    assert unknown.status_code == 404
    assert field(paid_page.text, "order-status") == "PAID"
    assert 'id="not-payable"' in paid_page.text and 'id="pay-button"' not in paid_page.text


def chromium_driver_or_skip(
    extra_flags: tuple[str, ...] = (), log_network: bool = False
) -> Iterator[object]:
    """Headless Chromium. `extra_flags`: more command-line switches; `log_network`: the
    DevTools performance log is kept (every request the page makes can be read back)."""
    have = os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)
    if not have and not os.environ.get("CI"):
        pytest.skip("chromium is not installed (scripts/ensure-browser.sh installs it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sandbox-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *extra_flags,
    ):
        options.add_argument(flag)
    if log_network:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # An explicit driver path: Selenium must not fetch a driver or a browser of its own.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def chromium() -> Iterator[object]:
    yield from chromium_driver_or_skip()


@pytest.mark.slow
async def test_checkout_in_headless_chromium(
    api: httpx.AsyncClient, receiver: Receiver, sandbox_url: str, chromium: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(chromium, WebDriver)
    name = unique("browser")
    order = await create_order(api, amount=499.99, notify_url=receiver.hook(name))

    def click_through() -> tuple[str, str]:
        chromium.get(checkout_url(sandbox_url, order.payment_session_id))
        assert chromium.find_element(By.ID, "order-amount").text == "INR 499.99"
        chromium.find_element(By.ID, "method-netbanking").click()
        chromium.find_element(By.ID, "outcome-success").click()
        chromium.find_element(By.ID, "pay-button").click()
        # The click returns before the result page has loaded: wait for it.
        status = (
            WebDriverWait(chromium, 15)
            .until(expected_conditions.presence_of_element_located((By.ID, "payment-status")))
            .text
        )
        link = chromium.find_element(By.ID, "return-link").get_attribute("href") or ""
        return status, link

    # Selenium blocks; the servers run in their own threads, the test loop stays free.
    status, link = await asyncio.to_thread(click_through)
    assert status == "SUCCESS"
    assert link == f"https://merchant.example/return?order_id={order.order_id}"
    assert (await fetch_order(api, order.order_id)).order_status == "PAID"
    (hook,) = await receiver.wait_for(name, 1)
    event = payment_hook(hook)
    assert event.data.payment.payment_group == "net_banking"
