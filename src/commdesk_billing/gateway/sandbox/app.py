"""`create_sandbox_app(config)`: the ASGI app of the local Cashfree sandbox (PG, Subscriptions,
Payouts V2 and bank-account verification)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from commdesk_billing.gateway.sandbox.api import Gate, error_response
from commdesk_billing.gateway.sandbox.config import SandboxConfig
from commdesk_billing.gateway.sandbox.routes import (
    checkout,
    control,
    orders,
    payments,
    payout_control,
    payouts,
    refunds,
    settlements,
    simulate,
    split_control,
    subscription_checkout,
    subscription_control,
    subscriptions,
    vendors,
    verification,
)
from commdesk_billing.gateway.sandbox.service import Sandbox


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and methods get Cashfree's own "bad URL" body (cashfree.md §8.1).
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = {"x-request-id": request.headers.get("x-request-id") or secrets.token_hex(16)}
    return error_response(
        status, "request_failed", "bad URL, please check API documentation", headers
    )


def create_sandbox_app(config: SandboxConfig | None = None) -> Starlette:
    config = config or SandboxConfig()
    sandbox = Sandbox(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sandbox.start()
        try:
            yield
        finally:
            await sandbox.close()

    app = Starlette(
        routes=[
            # Order Pay before `/pg/orders/{order_id}` so "sessions" is never taken for an id.
            *payments.routes,
            *orders.routes,
            *refunds.routes,
            *settlements.routes,
            *vendors.routes,
            *subscriptions.routes,
            *subscription_checkout.routes,
            *simulate.routes,
            *checkout.routes,
            *payouts.routes,
            *verification.routes,
            *control.routes,
            *payout_control.routes,
            *split_control.routes,
            *subscription_control.routes,
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.sandbox = sandbox
    app.state.gate = Gate(config, sandbox)
    return app
