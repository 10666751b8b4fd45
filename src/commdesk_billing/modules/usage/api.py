"""Usage routes: report a batch of usage events, manage the price book, read a summary.

`POST /v1/usage/events` takes no Idempotency-Key: each event carries its own id, and a
replayed event (alone or in another batch) has its one effect once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Engine, IdemKey
from commdesk_billing.errors import UsageWindowInvalid
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, respond, run_keyed
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.usage import auth, metering, pricebook, summary
from commdesk_billing.modules.usage.model import Granularity
from commdesk_billing.modules.usage.schemas import (
    MeterPattern,
    PriceBookOut,
    PriceVersionIn,
    PriceVersionOut,
    SummaryOut,
    UsageBatchIn,
    UsageBatchOut,
)
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.problems import errors
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1", tags=["usage"])

# Each route names its own errors (problems.errors); 401, 429 and 503
# `database_unavailable` are added for all.

# Sent as they are by tests/contract/test_examples.py (the events with a service token of
# usage:write, the price with finance_admin's): each must be accepted.
_EVENTS_EXAMPLES = {
    "batch": {
        "summary": "Two events: one charged to a user's wallet, one to a wallet by id",
        "value": {
            "events": [
                {
                    "event_id": "msg-8812-summary",
                    "meter": "ai.summary",
                    "quantity": 1200,
                    "occurred_at": "2026-12-07T10:15:00+05:30",
                    "user_id": "5e0d7c1a-member",
                },
                {
                    "event_id": "msg-8813-summary",
                    "meter": "ai.summary",
                    "quantity": 300,
                    "occurred_at": "2026-12-07T10:16:30+05:30",
                    "wallet_id": "0b6c2d1e-8f4a-4c3b-9a55-2f1f0c9e7a10",
                },
            ]
        },
    }
}
_PRICE_EXAMPLES = {
    "tiered": {
        "summary": "Tiered per-unit price, owing up to 500 credits when a wallet runs dry",
        "value": {
            "meter": "ai.summary",
            "tiers": [
                {"up_to": 100000, "millicredits_per_unit": 10},
                {"up_to": None, "millicredits_per_unit": 5},
            ],
            "on_insufficient": "overdraft",
            "overdraft_limit_credits": 500,
            "reason": "AI summaries priced per token from 2026-12",
        },
    }
}


@router.post(
    "/usage/events",
    openapi_extra=for_services(Scope.usage_write),
    response_model=UsageBatchOut,
    responses=errors(
        {
            403: "Not a service token with usage:write (`forbidden`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid (`validation_error`): no events or more than 1000, a quantity "
            "out of range, both or neither of `wallet_id` and `user_id`, a timestamp without "
            "an offset or outside [2000, 2100)",
        }
    ),
    summary="Report 1 to 1000 usage events (service, usage:write): rated and debited now",
)
async def report_usage(
    body: Annotated[UsageBatchIn, Body(openapi_examples=_EVENTS_EXAMPLES)],
    engine: Engine,
    caller: Caller,
) -> UsageBatchOut:
    """Rates each event by its meter's price in force when it occurred (tiers count the
    wallet's units in that month) and debits the credits from the wallet at once, in one
    transaction; the answer has one result per event, in order. An event that cannot be
    charged is `rejected` with its `reason` (no price, no wallet, too few credits under a
    reject policy...), not an error. An `event_id` seen before is a `duplicate` with the
    first outcome, so a batch is safe to send again; the same id with other contents is a
    `conflict`."""
    auth.authorize_report(caller)
    events = [e.to_event() for e in body.events]
    at = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> UsageBatchOut:
        return UsageBatchOut.of(
            await metering.record_batch(conn, source=caller.sub, events=events, now=at)
        )

    return await in_transaction(engine, work)


@router.post(
    "/usage/price-book",
    status_code=201,
    response_model=PriceVersionOut,
    responses=errors(
        {
            400: "Idempotency-Key missing (`idempotency_key_required`) or malformed "
            "(`idempotency_key_invalid`)",
            403: "Only finance_admin changes the price book (`forbidden`)",
            409: "`effective_from` not after the meter's latest version or an event already "
            "rated (`price_version_too_early`), or the same Idempotency-Key still running "
            "(`idempotency_key_in_use`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid (`validation_error`: tiers not rising or the last with an "
            "`up_to`, an overdraft limit on a reject policy), or the key reused with another "
            "body (`idempotency_key_reused`)",
        }
    ),
    summary="Add a price version for a meter, append-only (finance_admin)",
)
async def add_price_version(
    body: Annotated[PriceVersionIn, Body(openapi_examples=_PRICE_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Prices a meter from `effective_from` (default: now) as the meter's next version,
    the first one creating the meter; versions are never changed, and events already rated
    keep their price. `on_insufficient` says what an event does when the wallet is short:
    `reject` it, or `overdraft` up to `overdraft_limit_credits` of debt, repaid from the
    next credits. Written to the audit log."""
    auth.authorize_price_change(caller)

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        version = await pricebook.add_version(
            conn,
            meter=body.meter,
            effective_from=body.effective_from or datetime.now(UTC),
            tiers=body.tier_values(),
            on_insufficient=body.on_insufficient,
            overdraft_limit_credits=body.overdraft_limit_credits,
            reason=body.reason,
            by=caller.sub,
        )
        await audit.record(
            conn,
            caller,
            action="usage.price_version.added",
            target_type="usage_meter",
            target_id=version.meter,
            details={"version": version.version, "reason": body.reason},
            request_id=sane_header(request.headers.get("x-request-id")),
        )
        return Answer(201, PriceVersionOut.of(version).model_dump(mode="json"))

    keyed = KeyedRequest.of(request, caller.sub, key, body)
    return respond(await run_keyed(engine, keyed, work))


@router.get(
    "/usage/price-book",
    openapi_extra=for_services(Scope.usage_read, Scope.usage_write),
    response_model=PriceBookOut,
    responses=errors(
        {
            403: "Not finance_admin, support or auditor, nor a service with usage:read or "
            "usage:write (`forbidden`)",
            404: "`meter` given and it has no price version (`usage_meter_not_found`)",
            422: "`meter` not a meter's name (`validation_error`)",
        }
    ),
    summary="The price book: every version of one meter or of all (staff, usage services)",
)
async def read_price_book(
    engine: Engine,
    caller: Caller,
    meter: Annotated[str | None, Query(pattern=MeterPattern)] = None,
) -> PriceBookOut:
    """Every price version, by meter and oldest first, or only those of `meter`: what a
    reporting service charges and what staff check a member's usage against. The version
    in force at an instant is the latest whose `effective_from` is not after it."""
    auth.authorize_price_read(caller)

    async def read(conn: AsyncConnection) -> PriceBookOut:
        found = await pricebook.versions(conn, meter)
        return PriceBookOut(versions=[PriceVersionOut.of(v) for v in found])

    return await in_transaction(engine, read)


@router.get(
    "/usage/summary",
    openapi_extra=for_services(Scope.usage_read),
    response_model=SummaryOut,
    responses=errors(
        {
            403: "Not the wallet's owner, finance_admin, support or auditor, nor a service "
            "with usage:read (`forbidden`)",
            404: "No such wallet (`not_found`)",
            422: "`wallet_id` missing or malformed, a date or `granularity` invalid "
            "(`validation_error`), or `to` before `from` or a window longer than allowed "
            "(`usage_window_invalid`)",
        }
    ),
    summary="A wallet's usage per meter and period (month or day, UTC), and its usage debt "
    "(its owner, staff, services with usage:read)",
)
async def usage_summary(
    engine: Engine,
    caller: Caller,
    wallet_id: uuid.UUID,
    meter: Annotated[str | None, Query(pattern=MeterPattern)] = None,
    from_: Annotated[date | None, Query(alias="from", description="Default: this month")] = None,
    to: Annotated[date | None, Query(description="Included; default: today (UTC)")] = None,
    granularity: Granularity = Granularity.month,
) -> SummaryOut:
    """The wallet's units, credits charged, debited and owed, and event counts per meter
    and per month or day between `from` and `to` (UTC dates, both included), with the
    totals, and what it owes each meter under an overdraft policy now
    (`debt_outstanding_credits`). Rejected events are counted but charge nothing."""
    today = datetime.now(UTC).date()
    last = to or today
    first = from_ or last.replace(day=1)
    try:
        first, last = summary.window(granularity, first, last)
    except ValueError as exc:
        raise UsageWindowInvalid(str(exc)) from exc

    async def read(conn: AsyncConnection) -> SummaryOut:
        wallet = await ws.get_wallet(conn, wallet_id)
        await auth.authorize_summary(conn, caller, wallet)
        return SummaryOut.of(
            await summary.read(
                conn,
                wallet_id=wallet_id,
                meter=meter,
                granularity=granularity,
                first=first,
                last=last,
            )
        )

    return await in_transaction(engine, read)
