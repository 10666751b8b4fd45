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
