"""/docs and /redoc in headless Chromium with every host but loopback unreachable: the pages
render the API's operations from what we serve alone, and ask no other host for anything.

With APIDOCS_SCREENSHOT set to a file name, /docs is saved there as PNG (docs/openapi-docs.png
is made this way)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.gateway.sandbox.test_checkout import chromium_driver_or_skip
from tests.harness.stack import Stack

SHOT = os.environ.get("APIDOCS_SCREENSHOT")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# Every host but loopback is unreachable: names do not resolve, and anything else (an
# address literal) goes to a proxy on a port where nothing listens. Chromium never sends
# loopback through a proxy.
OFFLINE = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--proxy-server=http://127.0.0.1:9",
)


@pytest.fixture
def offline_chromium() -> Iterator[object]:
    yield from chromium_driver_or_skip(OFFLINE, log_network=True)


def _requested(driver: Any) -> list[str]:
    """Every URL the browser asked for since the last call (DevTools performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _foreign(urls: list[str]) -> list[str]:
    """The requests that would leave the machine (data:, blob: and the browser's own
    chrome:// pages never do)."""
    network = ("http", "https", "ws", "wss", "ftp")
    return [
        u for u in urls if urlsplit(u).scheme in network and urlsplit(u).hostname not in LOOPBACK
    ]


def _operations(stack_spec: dict[str, Any]) -> int:
    methods = {"get", "put", "post", "delete", "patch"}
    return sum(1 for ops in stack_spec["paths"].values() for m in ops if m in methods)


@pytest.mark.slow
async def test_docs_render_offline_from_our_own_assets(
    stack: Stack, offline_chromium: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    driver = offline_chromium
    assert isinstance(driver, WebDriver)
    spec = (await stack.api.get("/openapi.json")).json()
    expected = _operations(spec)
    assert expected > 80

    def swagger() -> tuple[int, list[str], list[str], list[dict[str, Any]]]:
        driver.set_window_size(1280, 1000)
        driver.get(stack.api_url + "/docs")
        WebDriverWait(driver, 60).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= expected
        )
        blocks = driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
        paths = [b.get_attribute("data-path") or b.text for b in blocks]
        if SHOT:
            driver.save_screenshot(SHOT)
        return len(blocks), paths, _requested(driver), driver.get_log("browser")

    count, paths, urls, console = await asyncio.to_thread(swagger)
    assert count == expected
    assert "/v1/payments/orders" in paths and "/v1/wallets/me" in paths
    # The page asked for its own files and the spec, and nothing from any other host.
    assert f"{stack.api_url}/docs/assets/swagger-ui-bundle.js" in urls
    assert f"{stack.api_url}/openapi.json" in urls
    assert _foreign(urls) == []
    # No script or style was refused by the page's policy, nothing failed to load.
    assert [m["message"] for m in console if m["level"] == "SEVERE"] == []

    def redoc() -> tuple[int, list[str], list[dict[str, Any]]]:
        driver.get(stack.api_url + "/redoc")
        selector = "[data-section-id^='operation/']"
        WebDriverWait(driver, 60).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, selector)) >= expected
        )
        shown = len(driver.find_elements(By.CSS_SELECTOR, selector))
        return shown, _requested(driver), driver.get_log("browser")

    shown, urls, console = await asyncio.to_thread(redoc)
    assert shown == expected
    assert f"{stack.api_url}/docs/assets/redoc.standalone.js" in urls
    assert _foreign(urls) == []
    assert [m["message"] for m in console if m["level"] == "SEVERE"] == []
