"""SQL for the usage tables: meters and their price versions, events, aggregates, debts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.usage.model import (
    Debt,
    Granularity,
    MonthState,
    PeriodFigures,
    Policy,
    PriceVersion,
    RecordedEvent,
    Tier,
)

_VERSION_COLS = (
    "meter, version, effective_from, tiers, on_insufficient, overdraft_limit_credits, reason, "
    "created_by, created_at"
)
_EVENT_COLS = (
    "id, source, event_id, wallet_id, meter, quantity, occurred_at, price_version, "
    "millicredits, credits, outcome, reject_reason, debited_credits, debt_credits"
)
_PERIOD_COLS = (
    "meter, granularity, period_start, units, millicredits, credits, debited_credits, "
    "debt_credits, events, rejected_events"
)


def _version(row: Row[Any]) -> PriceVersion:
    f = row._asdict()
    tiers = tuple(Tier(t["up_to"], t["millicredits_per_unit"]) for t in f["tiers"])
    return PriceVersion(
        **{**f, "tiers": tiers, "on_insufficient": Policy(f["on_insufficient"])},
    )


def tiers_json(tiers: Sequence[Tier]) -> str:
    return json.dumps(
        [{"up_to": t.up_to, "millicredits_per_unit": t.millicredits_per_unit} for t in tiers]
    )


# --- the price book ----------------------------------------------------------------------


async def lock_meter(conn: AsyncConnection, meter: str) -> int | None:
    """The meter's row, created if new, locked FOR UPDATE: a price change waits for every
    batch rating this meter (they hold it FOR SHARE), and they for it. Its latest version,
    None for a meter with none yet."""
    await conn.execute(
        sql("""INSERT INTO usage_meters (meter, latest_version) VALUES (:m, 1)
               ON CONFLICT (meter) DO NOTHING"""),
        {"m": meter},
    )
    row = (
        await conn.execute(
            sql("""SELECT m.latest_version,
                          EXISTS (SELECT 1 FROM usage_price_versions v WHERE v.meter = m.meter)
                              AS priced
                     FROM usage_meters m WHERE m.meter = :m FOR UPDATE"""),
            {"m": meter},
        )
    ).one()
    return int(row.latest_version) if row.priced else None


async def latest_version(conn: AsyncConnection, meter: str, version: int) -> PriceVersion:
    row = (
        await conn.execute(
            sql(
                f"""SELECT {_VERSION_COLS} FROM usage_price_versions
                     WHERE meter = :m AND version = :v"""
            ),
            {"m": meter, "v": version},
        )
    ).one()
    return _version(row)


async def last_rated_at(conn: AsyncConnection, meter: str) -> datetime | None:
    """When the latest event recorded for the meter occurred (a new version must start
    after it: events already rated are never re-rated)."""
    value = (
        await conn.execute(
            sql("SELECT max(occurred_at) FROM usage_metering WHERE meter = :m"), {"m": meter}
        )
    ).scalar_one()
    return value if isinstance(value, datetime) else None


async def insert_version(conn: AsyncConnection, v: PriceVersion) -> PriceVersion:
    row = (
        await conn.execute(
            sql(f"""
            INSERT INTO usage_price_versions
                (meter, version, effective_from, tiers, on_insufficient,
                 overdraft_limit_credits, reason, created_by)
            VALUES (:m, :v, :eff, CAST(:tiers AS jsonb), :policy, :limit, :reason, :by)
            RETURNING {_VERSION_COLS}"""),
            {
                "m": v.meter,
                "v": v.version,
                "eff": v.effective_from,
                "tiers": tiers_json(v.tiers),
                "policy": v.on_insufficient.value,
                "limit": v.overdraft_limit_credits,
                "reason": v.reason,
                "by": v.created_by,
            },
        )
    ).one()
    await conn.execute(
        sql("UPDATE usage_meters SET latest_version = :v, updated_at = now() WHERE meter = :m"),
        {"m": v.meter, "v": v.version},
    )
    return _version(row)


async def price_book(conn: AsyncConnection, meter: str | None) -> list[PriceVersion]:
    rows = (
        await conn.execute(
            sql(f"""SELECT {_VERSION_COLS} FROM usage_price_versions
                     WHERE CAST(:m AS text) IS NULL OR meter = :m
                     ORDER BY meter, version LIMIT 2000"""),
            {"m": meter},
        )
    ).all()
    return [_version(r) for r in rows]


async def share_meters(
    conn: AsyncConnection, meters: Sequence[str]
) -> dict[str, list[PriceVersion]]:
    """The meters' rows FOR SHARE (no version is added while the batch rates) and all their
    versions, oldest first. A meter nobody priced is absent."""
    if not meters:
        return {}
    await conn.execute(
        sql("""SELECT meter FROM usage_meters WHERE meter = ANY(CAST(:ms AS text[]))
                ORDER BY meter FOR SHARE"""),
        {"ms": sorted(set(meters))},
    )
    rows = (
        await conn.execute(
            sql(f"""SELECT {_VERSION_COLS} FROM usage_price_versions
                     WHERE meter = ANY(CAST(:ms AS text[])) ORDER BY meter, version"""),
            {"ms": sorted(set(meters))},
        )
    ).all()
    found: dict[str, list[PriceVersion]] = {}
    for r in rows:
        v = _version(r)
        found.setdefault(v.meter, []).append(v)
    return found


# --- events ------------------------------------------------------------------------------


async def retry_transaction(conn: AsyncConnection) -> None:
    """Abort the transaction as a serialization failure (SQLSTATE 40001), which
    `in_transaction` runs again: a concurrent batch recorded some of this batch's events."""
    await conn.execute(
        sql("""DO $$ BEGIN
                 RAISE EXCEPTION 'a concurrent batch recorded some of these usage events'
                       USING ERRCODE = 'serialization_failure';
               END $$""")
    )


async def find_events(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RecordedEvent]:
    if not ids:
        return {}
    rows = (
        await conn.execute(
            sql(f"SELECT {_EVENT_COLS} FROM usage_metering WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": list(ids)},
        )
    ).all()
    return {r.id: RecordedEvent(**r._asdict()) for r in rows}


@dataclass(frozen=True)
class EventRow:
    id: uuid.UUID
    source: str
    event_id: str
    wallet_id: uuid.UUID
    meter: str
    quantity: int
    occurred_at: datetime
    price_version: int
    period_month: date
    period_day: date
    units_before: int
    millicredits_before: int
    millicredits: int
    credits: int
    outcome: str
    reject_reason: str | None
    debited_credits: int
    debt_credits: int
    debt_after_credits: int


async def insert_events(conn: AsyncConnection, rows: Sequence[EventRow]) -> bool:
    """Insert the rows, in id order (two batches sharing event ids wait for each other in
    one order); False when a row was already there: a concurrent transaction recorded that
    event id first (the insert waited for it to commit), and this one must start again.
    No lock per event: a thousand row locks or advisory locks per batch would fill the
    server's shared lock table."""
    if not rows:
        return True
    rows = sorted(rows, key=lambda r: r.id)
    cols = list(EventRow.__dataclass_fields__)
    types = {
        "id": "uuid",
        "source": "text",
        "event_id": "text",
        "wallet_id": "uuid",
        "meter": "text",
        "quantity": "bigint",
        "occurred_at": "timestamptz",
        "price_version": "int",
        "period_month": "date",
        "period_day": "date",
        "outcome": "text",
        "reject_reason": "text",
    }
    unnest = ", ".join(f"CAST(:{c} AS {types.get(c, 'bigint')}[])" for c in cols)
    inserted = (
        await conn.execute(
            sql(f"""INSERT INTO usage_metering ({", ".join(cols)})
                    SELECT * FROM unnest({unnest})
                    ON CONFLICT DO NOTHING RETURNING id"""),
            {c: [getattr(r, c) for r in rows] for c in cols},
        )
    ).all()
    return len(inserted) == len(rows)


# --- aggregates --------------------------------------------------------------------------


async def month_states(
    conn: AsyncConnection, keys: Sequence[tuple[uuid.UUID, str, date]]
) -> dict[tuple[uuid.UUID, str, date], MonthState]:
    """The months' running figures. Read under the wallets' row locks, which every writer
    of a wallet's usage holds: they cannot move before this transaction writes."""
    if not keys:
        return {}
    rows = (
        await conn.execute(
            sql("""SELECT a.wallet_id, a.meter, a.period_start, a.units, a.millicredits
                     FROM usage_aggregates a
                     JOIN unnest(CAST(:w AS uuid[]), CAST(:m AS text[]), CAST(:p AS date[]))
                          AS k(w, m, p)
                       ON a.wallet_id = k.w AND a.meter = k.m AND a.period_start = k.p
                    WHERE a.granularity = 'month'"""),
            {"w": [k[0] for k in keys], "m": [k[1] for k in keys], "p": [k[2] for k in keys]},
        )
    ).all()
    return {
        (r.wallet_id, r.meter, r.period_start): MonthState(r.units, r.millicredits) for r in rows
    }


@dataclass
class AggregateDelta:
    units: int = 0
    millicredits: int = 0
    credits: int = 0
    debited_credits: int = 0
    debt_credits: int = 0
    events: int = 0
    rejected_events: int = 0


AggregateKey = tuple[uuid.UUID, str, str, date]  # wallet, meter, granularity, period start


async def add_to_aggregates(
    conn: AsyncConnection, deltas: dict[AggregateKey, AggregateDelta]
) -> None:
    """One upsert for every period the batch touched (one row per key: a statement may not
    update a row twice)."""
    if not deltas:
        return
    keys = sorted(deltas, key=lambda k: (str(k[0]), k[1], k[2], k[3]))
    fields = list(AggregateDelta.__dataclass_fields__)
    params: dict[str, list[Any]] = {
        "w": [k[0] for k in keys],
        "m": [k[1] for k in keys],
        "g": [k[2] for k in keys],
        "p": [k[3] for k in keys],
    }
    for f in fields:
        params[f] = [getattr(deltas[k], f) for k in keys]
    arrays = ", ".join(f"CAST(:{f} AS bigint[])" for f in fields)
    await conn.execute(
        sql(f"""
        INSERT INTO usage_aggregates
            (wallet_id, meter, granularity, period_start, {", ".join(fields)})
        SELECT * FROM unnest(CAST(:w AS uuid[]), CAST(:m AS text[]), CAST(:g AS text[]),
                             CAST(:p AS date[]), {arrays})
        ON CONFLICT (wallet_id, meter, granularity, period_start) DO UPDATE SET
            {", ".join(f"{f} = usage_aggregates.{f} + excluded.{f}" for f in fields)},
            updated_at = now()"""),
        params,
    )


async def periods(
    conn: AsyncConnection,
    *,
    wallet_id: uuid.UUID,
    meter: str | None,
    granularity: Granularity,
    first: date,
    last: date,
) -> list[PeriodFigures]:
    rows = (
        await conn.execute(
            sql(f"""SELECT {_PERIOD_COLS} FROM usage_aggregates
                     WHERE wallet_id = :w AND granularity = :g
                       AND period_start BETWEEN :first AND :last
                       AND (CAST(:m AS text) IS NULL OR meter = :m)
                     ORDER BY period_start, meter"""),
            {"w": wallet_id, "g": granularity.value, "first": first, "last": last, "m": meter},
        )
    ).all()
    return [
        PeriodFigures(**{**r._asdict(), "granularity": Granularity(r.granularity)}) for r in rows
    ]


# --- debts -------------------------------------------------------------------------------


async def debts(conn: AsyncConnection, wallet_ids: Sequence[uuid.UUID]) -> list[Debt]:
    """The wallets' debts, by wallet then meter (read under the wallets' row locks)."""
    if not wallet_ids:
        return []
    rows = (
        await conn.execute(
            sql("""SELECT wallet_id, meter, incurred_credits, repaid_credits FROM usage_debts
                    WHERE wallet_id = ANY(CAST(:ws AS uuid[]))
                    ORDER BY wallet_id, meter"""),
            {"ws": list(set(wallet_ids))},
        )
    ).all()
    return [Debt(**r._asdict()) for r in rows]


async def owes(conn: AsyncConnection, wallet_id: uuid.UUID) -> bool:
    """Whether the wallet has usage debt not yet repaid (one index probe: the key starts
    with the wallet)."""
    row = (
        await conn.execute(
            sql("""SELECT EXISTS (SELECT 1 FROM usage_debts
                    WHERE wallet_id = :w AND repaid_credits < incurred_credits)"""),
            {"w": wallet_id},
        )
    ).scalar_one()
    return bool(row)


async def add_debts(conn: AsyncConnection, incurred: dict[tuple[uuid.UUID, str], int]) -> None:
    """(wallet, meter) → credits newly owed."""
    if not incurred:
        return
    keys = sorted(incurred, key=lambda k: (str(k[0]), k[1]))
    await conn.execute(
        sql("""
        INSERT INTO usage_debts (wallet_id, meter, incurred_credits, repaid_credits)
        SELECT w, m, i, 0 FROM unnest(CAST(:w AS uuid[]), CAST(:m AS text[]),
                                      CAST(:i AS bigint[])) AS x(w, m, i)
        ON CONFLICT (wallet_id, meter) DO UPDATE SET
            incurred_credits = usage_debts.incurred_credits + excluded.incurred_credits,
            updated_at = now()"""),
        {"w": [k[0] for k in keys], "m": [k[1] for k in keys], "i": [incurred[k] for k in keys]},
    )


async def repay_debts(conn: AsyncConnection, repaid: dict[tuple[uuid.UUID, str], int]) -> None:
    """(wallet, meter) → credits repaid (each debt exists: something was owed)."""
    if not repaid:
        return
    keys = sorted(repaid, key=lambda k: (str(k[0]), k[1]))
    await conn.execute(
        sql("""
        UPDATE usage_debts d SET repaid_credits = d.repaid_credits + x.r, updated_at = now()
          FROM unnest(CAST(:w AS uuid[]), CAST(:m AS text[]), CAST(:r AS bigint[])) AS x(w, m, r)
         WHERE d.wallet_id = x.w AND d.meter = x.m"""),
        {"w": [k[0] for k in keys], "m": [k[1] for k in keys], "r": [repaid[k] for k in keys]},
    )


async def insert_repayments(
    conn: AsyncConnection, rows: Sequence[tuple[uuid.UUID, uuid.UUID, str, int, int, str]]
) -> None:
    """(id, wallet, meter, repaid_before, credits, cause) each."""
    if not rows:
        return
    await conn.execute(
        sql("""
        INSERT INTO usage_debt_repayments (id, wallet_id, meter, repaid_before, credits, cause)
        SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:w AS uuid[]), CAST(:m AS text[]),
                             CAST(:b AS bigint[]), CAST(:c AS bigint[]),
                             CAST(:cause AS text[]))"""),
        {
            "id": [r[0] for r in rows],
            "w": [r[1] for r in rows],
            "m": [r[2] for r in rows],
            "b": [r[3] for r in rows],
            "c": [r[4] for r in rows],
            "cause": [r[5] for r in rows],
        },
    )
