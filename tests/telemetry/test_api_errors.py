"""A request that fails in a way its caller cannot cause (here: the API lost its database
engine) is answered 500 as a problem, reported to Sentry from inside the request's server
span, and that span, child of the caller's `traceparent`, reaches the collector marked as an
error: the event, the span and the caller share one trace id."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.telemetry import errors, tracing
from commdesk_billing.telemetry import logging as telemetry_logging
from tests.harness.otlp import Collector, otlp_collector
from tests.harness.sentry import SentryReceiver, sentry_receiver

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture
def receiver() -> Iterator[SentryReceiver]:
    with sentry_receiver() as r:
        try:
            yield r
        finally:
            errors.close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as c:
        yield c


@pytest.mark.usefixtures("logging_restored")
async def test_an_unexpected_failure_is_reported_in_the_request_span(
    receiver: SentryReceiver,
    collector: Collector,
    settings: Settings,
    capfd: pytest.CaptureFixture[str],
) -> None:
    telemetry_logging.configure("INFO", service="api", env="test")
    s = settings.model_copy(
        update={
            "sentry_dsn": SecretStr(receiver.dsn),
            "otel_exporter_otlp_endpoint": collector.url,
        }
    )
    app = create_app(s)
    # No lifespan: the API has its settings and Redis, and no database engine at all.
    app.state.redis = RedisStore.from_settings(s)
    token = issue_token(s, sub="buyer-sentry", role=Role.member)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
            r = await c.get(
                "/v1/wallets/me",
                headers={
                    "Authorization": f"Bearer {token}",
                    "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                },
            )
    finally:
        await app.state.redis.aclose()
    assert r.status_code == 500 and r.json()["code"] == "internal_error"

    deadline = time.monotonic() + 20
    spans = []
    while time.monotonic() < deadline and (not receiver.events() or not spans):
        await asyncio.to_thread(errors.flush, 2.0)
        await asyncio.to_thread(tracing.flush)
        spans = [sp for sp in collector.snapshot() if sp.trace_id == CALLER_TRACE]
        await asyncio.sleep(0.1)
    (event,) = receiver.events()
    (span,) = spans
    assert (span.service, span.kind, span.name) == (
        "commdesk-billing-api",
        "SERVER",
        "GET /v1/wallets/me",
    )
    assert span.parent_span_id == CALLER_SPAN
    assert span.attributes["http.response.status_code"] == 500
    assert event["tags"]["trace_id"] == CALLER_TRACE and event["tags"]["service"] == "api"
    assert event["contexts"]["trace"]["span_id"] == span.span_id
    assert event["exception"]["values"][-1]["type"] == "AttributeError"
    raw = receiver.raw().decode()
    assert token not in raw and "request" not in event and "user" not in event
    # The log line says the same: this trace, this request's span.
    logged = [json.loads(ln) for ln in capfd.readouterr().err.splitlines() if ln.startswith("{")]
    (crash,) = [ln for ln in logged if ln["event"] == "http.unhandled_error"]
    assert (crash["trace_id"], crash["span_id"]) == (CALLER_TRACE, span.span_id)
    assert crash["service"] == "api" and crash["level"] == "error"
    assert "AttributeError" in crash["exception"] and token not in json.dumps(logged)
