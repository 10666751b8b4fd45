"""Plans: append-only versions. A price change is a new version; the currency and the
interval of a code never change (a plan that bills differently is a new code), so a
subscription's periods always follow one calendar and proration compares like with like."""

from __future__ import annotations

import itertools

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import (
    InvalidAmount,
    SubscriptionPlanInactive,
    SubscriptionPlanNotFound,
)
from commdesk_billing.modules.subscriptions import repository as repo
from commdesk_billing.modules.subscriptions.model import Currency, IntervalUnit, Plan


async def add_version(
    conn: AsyncConnection,
    *,
    code: str,
    name: str,
    currency: Currency,
    price_credits: int | None,
    price_paise: int | None,
    interval_unit: IntervalUnit,
    interval_count: int,
    grace_period_s: int,
    dunning_offsets_s: list[int],
    active: bool,
    created_by: str,
) -> Plan:
    if (currency is Currency.credits) != (price_credits is not None) or (
        currency is Currency.inr
    ) != (price_paise is not None):
        raise InvalidAmount("a plan has exactly one price: price_credits or price_paise")
    if any(b <= a for a, b in itertools.pairwise(dunning_offsets_s)):
        raise InvalidAmount("dunning offsets must be increasing")
    if any(x <= 0 or x > grace_period_s for x in dunning_offsets_s):
        raise InvalidAmount("each dunning offset is after the period's start, within the grace")
    previous = await repo.latest_plan(conn, code)
    if previous is not None and (
        previous.currency is not currency
        or previous.same_interval != (interval_unit, interval_count)
    ):
        raise InvalidAmount("a new version keeps the plan's currency and interval")
    return await repo.add_plan_version(
        conn,
        code=code,
        name=name,
        currency=currency,
        price_credits=price_credits,
        price_paise=price_paise,
        interval_unit=interval_unit,
        interval_count=interval_count,
        grace_period_s=grace_period_s,
        dunning_offsets_s=dunning_offsets_s,
        active=active,
        created_by=created_by,
    )


async def latest(conn: AsyncConnection, code: str) -> Plan:
    plan = await repo.latest_plan(conn, code)
    if plan is None:
        raise SubscriptionPlanNotFound(f"no subscription plan {code}")
    return plan


async def version(conn: AsyncConnection, code: str, number: int) -> Plan:
    plan = await repo.get_plan(conn, code, number)
    if plan is None:  # pragma: no cover - a foreign key keeps every referenced version
        raise SubscriptionPlanNotFound(f"no subscription plan {code} v{number}")
    return plan


async def sellable(conn: AsyncConnection, code: str) -> Plan:
    """The version a new subscription (or a change) buys: the latest, if it is sold. An
    INR plan is charged on the member's mandate (`inr.py`)."""
    plan = await latest(conn, code)
    if not plan.active:
        raise SubscriptionPlanInactive(f"plan {code} is no longer sold")
    return plan


async def all_latest(conn: AsyncConnection) -> list[Plan]:
    return await repo.latest_plans(conn)
