"""The FastAPI application: routers, problem handlers, hygiene, metrics, health."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from commdesk_billing import apidocs, apispec, eventloop, problems, wiring
from commdesk_billing.config import Settings, get_settings
from commdesk_billing.console import web as console_web
from commdesk_billing.console.analytics import router as console_analytics_router
from commdesk_billing.console.findings import router as console_findings_router
from commdesk_billing.console.pages import router as console_router
from commdesk_billing.db import errors as db_errors
from commdesk_billing.db.engine import make_engine
from commdesk_billing.gateway.factory import cashfree_client, payouts_client, subscriptions_client
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.modules.analytics.api import router as analytics_router
from commdesk_billing.modules.audit.api import router as audit_router
from commdesk_billing.modules.autorecharge.api import router as auto_recharge_router
from commdesk_billing.modules.communities.api import router as communities_router
from commdesk_billing.modules.communities.mongo import community_directory
from commdesk_billing.modules.events.api import router as events_router
from commdesk_billing.modules.fraud.api import router as fraud_router
from commdesk_billing.modules.invoices.api import router as invoices_router
from commdesk_billing.modules.mandates.api import router as mandates_router
from commdesk_billing.modules.mandates.webhooks import router as subscription_webhooks_router
from commdesk_billing.modules.partners.api import router as partners_router
from commdesk_billing.modules.payees.api import router as payees_router
from commdesk_billing.modules.payments.api import router as payments_router
from commdesk_billing.modules.paymentstory.api import router as payment_story_router
from commdesk_billing.modules.reconciliation.api import router as reconciliation_router
from commdesk_billing.modules.refunds.api import router as refunds_router
from commdesk_billing.modules.reviews.api import router as fraud_reviews_router
from commdesk_billing.modules.settlements.api import router as settlements_router
from commdesk_billing.modules.settlements.webhooks import router as payout_webhooks_router
from commdesk_billing.modules.splits.api import router as splits_router
from commdesk_billing.modules.sponsorships.api import router as sponsorships_router
from commdesk_billing.modules.subscriptions.api import router as subscriptions_router
from commdesk_billing.modules.usage.api import router as usage_router
from commdesk_billing.modules.users.api import router as billing_profile_router
from commdesk_billing.modules.wallet.api import router as wallet_router
from commdesk_billing.modules.webhooks.api import router as webhooks_router
from commdesk_billing.security.cors import Cors
from commdesk_billing.security.csrf import CsrfGuard
from commdesk_billing.security.headers import SecurityHeaders
from commdesk_billing.security.hosts import AllowedHosts
from commdesk_billing.security.hpp import DuplicateParameters
from commdesk_billing.security.hygiene import RequestHygiene
from commdesk_billing.security.origin import RecordOrigin
from commdesk_billing.security.ratelimit import RateLimits
from commdesk_billing.security.ratelimit.openapi import document as document_rate_limits
from commdesk_billing.security.scrape import scrape_refusal
from commdesk_billing.security.sealed import key_ring
from commdesk_billing.security.strictquery import strict_query
from commdesk_billing.storage import StorageError
from commdesk_billing.storage.factory import document_store
from commdesk_billing.telemetry import context as trace_context
from commdesk_billing.telemetry import errors, exposition, tracing
from commdesk_billing.telemetry.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = structlog.get_logger(__name__)


# Probes and scrapes answer every few seconds and say nothing an access log is read for.
# What nginx logs for a request whose client closed the connection before the answer.
CLIENT_CLOSED_REQUEST = 499
_UNLOGGED_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
access_log = structlog.get_logger("commdesk_billing.access")


class Observe:
    """Request id, the request's server span (W3C `traceparent` in, when tracing is on) and
    access metrics by route template (never by raw path: ids would explode the label set)."""

    def __init__(
        self, app: ASGIApp, tracer: Tracer | None = None, *, access_log: bool = True
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw_id = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = raw_id if 0 < len(raw_id) <= 128 and raw_id.isprintable() else uuid.uuid4().hex
        # Kept on the scope too: a 500 is answered outside this middleware (problems.py).
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        method = scope.get("method", "")
        # W3C trace context: the caller's trace goes on through this request's span (or, with
        # tracing off, as it came) into the logs and the events the request announces.
        incoming = trace_context.parent_context(headers.get(b"traceparent"))
        span: Span | None = None
        token = None
        if self.tracer is not None:
            span = self.tracer.start_span(
                method,
                context=incoming,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method},
            )
            token = otel_context.attach(trace.set_span_in_context(span))
        elif incoming is not None:
            token = otel_context.attach(incoming)
        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client went away before its body arrived (a sender's timeout, a
            # keep-alive connection it dropped): nobody to answer, and not our error, so
            # not a 500, nor an error report. Counted and logged as nginx's 499.
            status = CLIENT_CLOSED_REQUEST
        except Exception as exc:
            # Reported here, inside the span; the answer itself comes from problems.py, which
            # logs it under the same trace.
            state["traceparent"] = trace_context.current_traceparent()
            errors.capture(exc)
            if span is not None:
                span.record_exception(exc)
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_LATENCY.labels(method, template).observe(elapsed)
            if self.access_log and template not in _UNLOGGED_ROUTES:
                # The route's template, never the raw path or query (ids, filters): what
                # was asked of which route, the answer, and how long it took.
                access_log.info(
                    "http.access",
                    method=method,
                    route=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id")
            if span is not None:
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
                span.end()
            if token is not None:
                otel_context.detach(token)


def create_served_app() -> FastAPI:
    """The app as `commdesk-billing api` serves it (uvicorn's factory, in each of its worker
    processes): once started, its heap is settled (`eventloop.settle_heap`)."""
    return create_app(settle_heap=True)


def create_app(settings: Settings | None = None, *, settle_heap: bool = False) -> FastAPI:
    cfg = settings or get_settings()
    wiring.install()
    errors.init(cfg, "api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = cfg
        app.state.engine = make_engine(cfg)
        app.state.cashfree = cashfree_client(cfg)
        app.state.subscriptions = subscriptions_client(cfg)
        app.state.documents = document_store(cfg)
        app.state.communities = community_directory(cfg)
        app.state.redis = RedisStore.from_settings(cfg)
        # Payout accounts need both the Payouts pair and the sealing keys; without them
        # the payee routes that touch an account answer 503 `payouts_unavailable`.
        payouts_configured = cfg.cashfree_payout_client_id and cfg.cashfree_payout_client_secret
        app.state.payouts = payouts_client(cfg) if payouts_configured else None
        app.state.payout_keys = key_ring(cfg) if cfg.payout_account_keys else None
        if settle_heap:
            eventloop.settle_heap()
        try:
            yield
        finally:
            # A debit batch in flight finishes its transaction before the pool it runs
            # on is disposed (its requests may have gone; the batch still commits or not).
            batcher = getattr(app.state, "debit_batcher", None)
            if batcher is not None:
                await batcher.aclose()
            if app.state.payouts is not None:
                await app.state.payouts.aclose()
            await app.state.communities.aclose()
            await app.state.redis.aclose()
            await app.state.documents.aclose()
            await app.state.cashfree.aclose()
            await app.state.subscriptions.aclose()
            await app.state.engine.dispose()
            if cfg.otel_exporter_otlp_endpoint:
                # Spans of the last requests leave before the process does.
                await asyncio.to_thread(tracing.flush)

    app = FastAPI(
        title="CommDesk Billing",
        version="0.1.0",
        lifespan=lifespan,
        description="Credits, wallets and the double-entry ledger of CommDesk. "
        "Errors are RFC 9457 application/problem+json.",
        # Our own /docs and /redoc (apidocs.py: no inline script), when BILLING_API_DOCS.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if cfg.docs_served else None,
        # Under /v1, a query parameter the route does not declare is refused (400).
        dependencies=[Depends(strict_query)],
    )
    # Also set by the lifespan; set here so middlewares see it from the first request
    # (security/addresses.py reads the trusted proxies from it).
    app.state.settings = cfg
    if cfg.docs_served:
        apidocs.install(app)
    problems.install(app)
    app.include_router(wallet_router)
    app.include_router(payments_router)
    app.include_router(payment_story_router)
    app.include_router(refunds_router)
    app.include_router(invoices_router)
    app.include_router(webhooks_router)
    app.include_router(communities_router)
    app.include_router(partners_router)
    app.include_router(payees_router)
    app.include_router(sponsorships_router)
    app.include_router(auto_recharge_router)
    app.include_router(settlements_router)
    app.include_router(payout_webhooks_router)
    app.include_router(splits_router)
    app.include_router(usage_router)
    app.include_router(subscriptions_router)
    app.include_router(mandates_router)
    app.include_router(subscription_webhooks_router)
    app.include_router(audit_router)
    app.include_router(fraud_router)
    app.include_router(fraud_reviews_router)
    app.include_router(reconciliation_router)
    app.include_router(analytics_router)
    app.include_router(billing_profile_router)
    # The finance console (console/): its pages, and its stylesheet served from the package.
    app.include_router(console_router)
    app.include_router(console_findings_router)
    app.include_router(console_analytics_router)
    app.mount("/console/static", StaticFiles(directory=console_web.STATIC_DIR), "console-static")
    app.include_router(events_router)

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        """Always `{"status": "ok"}` while the process serves HTTP; checks nothing else.
        For the orchestrator's liveness probe: no token, never rate limited."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Readiness: PostgreSQL reachable (others reported)")
    async def readyz(request: Request) -> JSONResponse:
        """200 while PostgreSQL answers, else 503, so a load balancer takes the instance
        out; document storage, MongoDB and the other dependencies are reported in `checks`
        but only degrade some routes, so they never make it unready. No token needed."""
        checks: dict[str, Any] = {}
        try:
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["postgresql"] = "ok"
        except Exception as exc:  # any failure means not ready; say which
            log.warning(
                "readyz.postgresql.down",
                error=type(exc).__name__,
                reason=db_errors.classify(exc, connecting=True),
            )
            checks["postgresql"] = "down"
        # Document storage only degrades PDFs: reported, never a reason to take us out.
        try:
            await request.app.state.documents.health()
            checks["document_storage"] = "ok"
        except StorageError as exc:
            log.warning("readyz.storage.down", error=type(exc).__name__)
            checks["document_storage"] = "degraded"
        # MongoDB serves community reads only (spends, payouts, earnings); purchases, refunds
        # and webhooks go on without it. Reported, never a reason to take us out either.
        checks["mongodb"] = "ok" if await request.app.state.communities.ping() else "down"
        # Redis speeds up rate limits and fraud velocity; without it both fall back (a local
        # limiter, SQL counts). Reported, never a reason to take us out.
        checks["redis"] = "ok" if await request.app.state.redis.ping() else "degraded"
        ready = checks["postgresql"] == "ok"
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics(request: Request) -> Response:
        refusal = scrape_refusal(cfg, request.headers.get("authorization"))
        if refusal == 401:
            return problems.problem(
                401,
                "unauthorized",
                "Unauthorized",
                "a valid bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        if refusal is not None:
            return problems.problem(404, "not_found", "Not found", "Not Found")
        return Response(exposition.payload(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        RequestHygiene,
        max_body_bytes=cfg.max_body_bytes,
        larger={"/v1/usage/events": cfg.usage_max_body_bytes},
        forms_under="/console/",
    )
    # Request hygiene (docs/api.md): each added outside the one before, so a request meets
    # them bottom to top and every refusal still passes SecurityHeaders and Observe.
    # Rate limits (security/ratelimit): outside the body hygiene, so a refused flood's
    # bodies are never read, and inside the rest, so a 429 carries the security and CORS
    # headers and is counted by Observe.
    app.add_middleware(RateLimits, settings=cfg)
    document_rate_limits(app)
    # Last of the OpenAPI steps: the Problem component, required Idempotency-Key (apispec.py).
    apispec.document(app)
    app.add_middleware(CsrfGuard, settings=cfg)
    app.add_middleware(
        Cors,
        origins=cfg.cors_origins,
        allow_credentials=cfg.cors_allow_credentials,
        max_age_s=cfg.cors_max_age_s,
    )
    app.add_middleware(AllowedHosts, hosts=cfg.served_hosts)
    app.add_middleware(DuplicateParameters)
    app.add_middleware(SecurityHeaders, settings=cfg)
    # Inside Observe (added after it runs first): reuses its request id.
    app.add_middleware(RecordOrigin, settings=cfg)
    app.add_middleware(Observe, tracer=tracing.tracer(cfg, "api"), access_log=cfg.access_log)
    return app
