"""Access logs: one `http.access` line per answered request, with the route's template (never
the raw path), the status, the duration and the request id; and the request id in every
problem body, the same as the X-Request-ID header."""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from commdesk_billing import app as app_module
from tests.conftest import auth


async def test_each_request_is_logged_once_by_route_template_with_its_request_id(
    client: Any, token: Any
) -> None:
    payment = uuid.uuid4()
    seen: list[dict[str, Any]] = []

    class Recorder:
        def info(self, event: str, **fields: Any) -> None:
            # The request id comes from the context the middleware binds.
            context = structlog.contextvars.get_contextvars()
            seen.append({"event": event, **context, **fields})

    original = app_module.access_log
    app_module.access_log = Recorder()  # type: ignore[assignment]
    try:
        r = await client.get(f"/v1/payments/{payment}", headers=auth(token()))
        probe = await client.get("/healthz")
    finally:
        app_module.access_log = original
    assert r.status_code == 404 and probe.status_code == 200
    lines = [e for e in seen if e.get("event") == "http.access"]
    assert len(lines) == 1, seen  # the probe is not logged
    line = lines[0]
    assert line["route"] == "/v1/payments/{payment_id}" and str(payment) not in str(line)
    assert (line["method"], line["status"]) == ("GET", 404)
    assert line["duration_ms"] >= 0
    assert line["request_id"] == r.headers["x-request-id"] == r.json()["request_id"]


async def test_a_callers_request_id_is_kept_in_the_problem(client: Any) -> None:
    r = await client.get("/v1/wallets/me", headers={"X-Request-ID": "support-ticket-42"})
    assert r.status_code == 401
    assert r.headers["x-request-id"] == "support-ticket-42"
    assert r.json()["request_id"] == "support-ticket-42"


async def test_a_client_gone_before_its_body_arrived_is_a_499_not_an_error(
    app: Any, monkeypatch: Any
) -> None:
    """A webhook sender that dropped the connection mid-body: nothing to answer, no 500
    counted, no error report; one access line with 499."""
    seen: list[dict[str, Any]] = []
    captured: list[BaseException] = []

    class Recorder:
        def info(self, event: str, **fields: Any) -> None:
            seen.append({"event": event, **fields})

    monkeypatch.setattr(app_module, "access_log", Recorder())
    monkeypatch.setattr(app_module.errors, "capture", captured.append)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/webhooks/cashfree",
        "raw_path": b"/v1/webhooks/cashfree",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"billing.test"),
            (b"content-type", b"application/json"),
            (b"content-length", b"500"),
            (b"x-webhook-timestamp", b"1"),
            (b"x-webhook-signature", b"x"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # raises nothing
    assert sent == []  # nobody to answer
    assert captured == []  # not reported as an error
    [line] = [e for e in seen if e["event"] == "http.access"]
    assert (line["route"], line["status"]) == ("/v1/webhooks/cashfree", 499)
