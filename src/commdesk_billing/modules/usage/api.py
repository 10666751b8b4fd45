"""Usage routes: report a batch of usage events, manage the price book, read a summary.

`POST /v1/usage/events` takes no Idempotency-Key: each event carries its own id, and a
replayed event (alone or in another batch) has its one effect once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
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
from commdesk_billing.problems import documented
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1", tags=["usage"])

_PROBLEMS = documented(
    {
        400: "Missing or malformed Idempotency-Key (price book)",
        401: "No valid bearer token",
        403: "Caller may not do this",
        404: "No such wallet (`not_found`) or meter (`usage_meter_not_found`)",
        409: "A price version would take effect too early (`price_version_too_early`), or "
        "the same key in flight",
        413: "Body too large",
        422: "Body or query invalid (`validation_error`: e.g. no events or more than 1000, "
        "a quantity out of range, both or neither of wallet_id and user_id), or the key "
        "reused with another body",
    }
)


@router.post(
    "/usage/events",
    openapi_extra=for_services(Scope.usage_write),
    response_model=UsageBatchOut,
    responses=_PROBLEMS,
    summary="Report 1 to 1000 usage events (service, usage:write): rated and debited now",
)
async def report_usage(body: UsageBatchIn, engine: Engine, caller: Caller) -> UsageBatchOut:
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
    responses=_PROBLEMS,
    summary="Add a price version for a meter (finance_admin): append-only",
)
async def add_price_version(
    body: PriceVersionIn, request: Request, engine: Engine, caller: Caller, key: IdemKey
) -> JSONResponse:
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

    keyed = KeyedRequest(
        scope=caller.sub,
        key=key,
        method=request.method,
        path=request.url.path,
        body=body.model_dump(mode="json"),
    )
    return respond(await run_keyed(engine, keyed, work))


@router.get(
    "/usage/price-book",
    openapi_extra=for_services(Scope.usage_read, Scope.usage_write),
    response_model=PriceBookOut,
    responses=_PROBLEMS,
    summary="The price book: every version of one meter or of all",
)
async def read_price_book(
    engine: Engine,
    caller: Caller,
    meter: Annotated[str | None, Query(pattern=MeterPattern)] = None,
) -> PriceBookOut:
    auth.authorize_price_read(caller)

    async def read(conn: AsyncConnection) -> PriceBookOut:
        found = await pricebook.versions(conn, meter)
        return PriceBookOut(versions=[PriceVersionOut.of(v) for v in found])

    return await in_transaction(engine, read)


@router.get(
    "/usage/summary",
    openapi_extra=for_services(Scope.usage_read),
    response_model=SummaryOut,
    responses=_PROBLEMS,
    summary="A wallet's usage per meter and period (month or day, UTC), and its usage debt",
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
