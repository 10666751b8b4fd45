"""Record, rate and debit a batch of usage events in the caller's transaction.

Synchronous: the route runs the whole batch in one transaction, so the reporting service is
told what became of each event. Locks, always in this order (no cycle with any other
operation, which takes wallet rows only or a meter row only):

1. the meters' rows FOR SHARE: no price version is added while events are rated;
2. the wallets' rows FOR UPDATE, in id order (`wallet.service.lock_wallets`): every write of
   a wallet's usage (events, aggregates, debts, repayments) holds it, so the events already
   recorded, the month's running figures and the debts read next cannot move under this
   batch — no lost update, and a replay for the same wallet sees the first's row.

No lock per event id (a thousand per batch would fill PostgreSQL's shared lock table):
the same event id raced for two wallets is caught by the unique key when the event rows
are inserted, before any debit — the insert waits for the other batch's commit and skips
the row, and this batch runs again as a serialization failure, to find the row recorded
(a duplicate, or a conflict when the content differs).

Then: debts are repaid from what each wallet has (`debts.plan`), each new event is rated by
the price version in force at its `occurred_at` (`rating`), the insufficient-credits policy
applied against the wallet's running balance, and everything is written: the event rows,
one `consume_credits_many` call for every debit of the batch (keys `usage:<event row id>`
and `usage-debt:<repayment id>`), the aggregates and the debts.

An event is identified by (the reporting service, its `event_id`); its row id is derived
from them, so a replay finds it. Rejections for the content of an event (no price in force,
no such wallet, a time out of range) are not recorded: the service may correct the event
and send it again under the same id. Rejections by policy (`insufficient_credits`,
`overdraft_limit_exceeded`) are recorded: the event had its one effect (none), and a replay
is a duplicate of that rejection.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.usage import debts, rating
from commdesk_billing.modules.usage import repository as repo
from commdesk_billing.modules.usage.model import (
    Debt,
    MonthState,
    Policy,
    PriceVersion,
    RecordedEvent,
)
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.common import MAX_CREDITS
from commdesk_billing.modules.wallet.debits import Debit
from commdesk_billing.modules.wallet.model import Wallet

log = structlog.get_logger(__name__)

MAX_BATCH = 1000
# An event may be reported this long after it occurred (a service's retries and outages);
# older usage belongs to a month that has been read as closed.
MAX_EVENT_AGE = timedelta(days=35)
# Clocks differ: an event a little ahead of ours is taken as it is.
MAX_CLOCK_SKEW = timedelta(minutes=5)

_NAMESPACE = uuid.UUID("7d2b0e7c-51f4-5b8e-8f0c-4a6e1d9c3b21")


@dataclass(frozen=True)
class UsageEvent:
    event_id: str
    meter: str
    quantity: int
    occurred_at: datetime
    wallet_id: uuid.UUID | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class EventResult:
    event_id: str
    status: str  # accepted | duplicate | rejected | conflict
    reason: str | None = None
    recorded: bool = False
    wallet_id: uuid.UUID | None = None
    price_version: int | None = None
    credits: int = 0
    debited_credits: int = 0
    debt_credits: int = 0


def row_id(source: str, event_id: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{source}\x00{event_id}")


def month_of(at: datetime) -> date:
    at = at.astimezone(UTC)
    return date(at.year, at.month, 1)


def day_of(at: datetime) -> date:
    return at.astimezone(UTC).date()


def version_at(versions: Sequence[PriceVersion], at: datetime) -> PriceVersion | None:
    """The version in force at `at`: the latest whose effective_from is not after it."""
    found = None
    for v in versions:  # oldest first; effective_from rises with the version
        if v.effective_from <= at:
            found = v
    return found


def _same(e: UsageEvent, wallet_id: uuid.UUID, r: RecordedEvent) -> bool:
    return (wallet_id, e.meter, e.quantity, e.occurred_at) == (
        r.wallet_id,
        r.meter,
        r.quantity,
        r.occurred_at,
    )


def _duplicate(e: UsageEvent, r: RecordedEvent) -> EventResult:
    return EventResult(
        e.event_id,
        "duplicate",
        r.reject_reason,
        True,
        r.wallet_id,
        r.price_version,
        r.credits,
        r.debited_credits,
        r.debt_credits,
    )


def _conflict(e: UsageEvent) -> EventResult:
    return EventResult(e.event_id, "conflict", "event_id_conflict")


class _Batch:
    """The running state of one batch's rating, under its locks."""

    def __init__(
        self,
        source: str,
        now: datetime,
        wallets: dict[uuid.UUID, Wallet],
        prices: dict[str, list[PriceVersion]],
        months: dict[tuple[uuid.UUID, str, date], MonthState],
        owed: list[Debt],
    ) -> None:
        self.source = source
        self.now = now
        self.wallets = wallets
        self.prices = prices
        self.months = months
        self.available = {w.id: w.available_credits for w in wallets.values()}
        self.outstanding = {(d.wallet_id, d.meter): d.outstanding for d in owed}
        self.rows: list[repo.EventRow] = []
        self.debits: list[Debit] = []
        self.aggregates: dict[repo.AggregateKey, repo.AggregateDelta] = {}
        self.incurred: dict[tuple[uuid.UUID, str], int] = {}

    def repay(self, repayments: Sequence[debts.Repayment]) -> None:
        for r in repayments:
            self.available[r.wallet_id] -= r.credits
            self.outstanding[(r.wallet_id, r.meter)] -= r.credits
            self.debits.append(r.debit())

    def rate(self, e: UsageEvent, wallet_id: uuid.UUID) -> EventResult:
        """Rate one new event and plan its effects; its result."""
        if e.occurred_at > self.now + MAX_CLOCK_SKEW:
            return EventResult(e.event_id, "rejected", "occurred_in_future")
        if e.occurred_at < self.now - MAX_EVENT_AGE:
            return EventResult(e.event_id, "rejected", "occurred_too_long_ago")
        if wallet_id not in self.wallets:
            return EventResult(e.event_id, "rejected", "wallet_not_found")
        version = version_at(self.prices.get(e.meter, []), e.occurred_at)
        if version is None:
            return EventResult(e.event_id, "rejected", "no_price_in_force")
        month = month_of(e.occurred_at)
        state = self.months.get((wallet_id, e.meter, month), MonthState())
        milli = rating.event_millicredits(version.tiers, state.units, e.quantity)
        credits = rating.event_credits(state.millicredits, milli)
        if credits > MAX_CREDITS:
            return EventResult(e.event_id, "rejected", "event_too_large")
        have = self.available[wallet_id]
        owed_before = self.outstanding.get((wallet_id, e.meter), 0)
        debited, debt, reason = credits, 0, None
        if credits > have:
            if version.on_insufficient is Policy.reject:
                reason = "insufficient_credits"
            elif owed_before + credits - have > version.overdraft_limit_credits:
                reason = "overdraft_limit_exceeded"
            else:
                debited, debt = have, credits - have
        rid = row_id(self.source, e.event_id)
        recorded_debit, recorded_debt = (0, 0) if reason else (debited, debt)
        self.rows.append(
            repo.EventRow(
                id=rid,
                source=self.source,
                event_id=e.event_id,
                wallet_id=wallet_id,
                meter=e.meter,
                quantity=e.quantity,
                occurred_at=e.occurred_at,
                price_version=version.version,
                period_month=month,
                period_day=day_of(e.occurred_at),
                units_before=state.units,
                millicredits_before=state.millicredits,
                millicredits=milli,
                credits=credits,
                outcome="rejected" if reason else "debited",
                reject_reason=reason,
                debited_credits=recorded_debit,
                debt_credits=recorded_debt,
                debt_after_credits=owed_before + recorded_debt,
            )
        )
        for granularity, start in (("month", month), ("day", day_of(e.occurred_at))):
            agg = self.aggregates.setdefault(
                (wallet_id, e.meter, granularity, start), repo.AggregateDelta()
            )
            if reason:
                agg.rejected_events += 1
                continue
            agg.events += 1
            agg.units += e.quantity
            agg.millicredits += milli
            agg.credits += credits
            agg.debited_credits += debited
            agg.debt_credits += debt
        if reason:
            return EventResult(
                e.event_id, "rejected", reason, True, wallet_id, version.version, credits
            )
        self.months[(wallet_id, e.meter, month)] = MonthState(
            state.units + e.quantity, state.millicredits + milli
        )
        self.available[wallet_id] = have - debited
        if debt:
            self.outstanding[(wallet_id, e.meter)] = owed_before + debt
            self.incurred[(wallet_id, e.meter)] = self.incurred.get((wallet_id, e.meter), 0) + debt
        if debited:
            self.debits.append(
                Debit(
                    wallet_id=wallet_id,
                    credits=debited,
                    idempotency_key=f"usage:{rid}",
                    reason=f"usage {e.meter}",
                    source_id=e.event_id,
                    metadata={
                        "usage_event": str(rid),
                        "meter": e.meter,
                        "quantity": e.quantity,
                        "price_version": version.version,
                        "source": self.source,
                    },
                )
            )
        return EventResult(
            e.event_id, "accepted", None, True, wallet_id, version.version, credits, debited, debt
        )


async def _wallet_ids(conn: AsyncConnection, events: Sequence[UsageEvent]) -> list[uuid.UUID]:
    """Each event's wallet: given, or the named user's (made if the user has none yet)."""
    by_user: dict[str, uuid.UUID] = {}
    found: list[uuid.UUID] = []
    for e in events:
        if e.wallet_id is not None:
            found.append(e.wallet_id)
            continue
        assert e.user_id is not None  # the schema requires one of the two
        if e.user_id not in by_user:
            by_user[e.user_id] = (await ws.get_or_create_user_wallet(conn, e.user_id)).id
        found.append(by_user[e.user_id])
    return found


async def record_batch(
    conn: AsyncConnection, *, source: str, events: Sequence[UsageEvent], now: datetime
) -> list[EventResult]:
    """Record, rate and debit `events` (at most MAX_BATCH) reported by `source`; a result per
    event, in order. Runs in the caller's transaction; idempotent per (source, event_id)."""
    if not 1 <= len(events) <= MAX_BATCH:
        raise ValueError(f"a batch has 1 to {MAX_BATCH} events")
    wallet_of = await _wallet_ids(conn, events)
    ids = [row_id(source, e.event_id) for e in events]
    prices = await repo.share_meters(conn, [e.meter for e in events])
    wallets = {w.id: w for w in await ws.lock_wallets(conn, wallet_of)}
    # Read under the wallets' locks: a replay for the same wallet waits for the batch that
    # records the event and sees its row. A replay for another wallet is caught when the
    # rows are inserted (below).
    earlier = await repo.find_events(conn, ids)
    fresh = [i for i, rid in enumerate(ids) if rid not in earlier]
    paying = {wallet_of[i] for i in fresh}
    months = await repo.month_states(
        conn,
        list(
            {
                (wallet_of[i], events[i].meter, month_of(events[i].occurred_at))
                for i in fresh
                if wallet_of[i] in wallets
            }
        ),
    )
    # Debts are repaid only in a batch that records something for the wallet: a replay has
    # no effect at all.
    owed = await repo.debts(conn, [w for w in wallets if w in paying])
    batch = _Batch(source, now, wallets, prices, months, owed)
    repayments = debts.plan(batch.available, [d for d in owed if d.outstanding > 0], "usage batch")
    batch.repay(repayments)

    results: list[EventResult] = []
    first_seen: dict[uuid.UUID, int] = {}  # row id -> index of its first event in this batch
    for i, e in enumerate(events):
        rid = ids[i]
        if rid in earlier:
            before = earlier[rid]
            results.append(
                _duplicate(e, before) if _same(e, wallet_of[i], before) else _conflict(e)
            )
            continue
        if rid in first_seen:
            j = first_seen[rid]
            first, outcome = events[j], results[j]
            same = (wallet_of[i], e.meter, e.quantity, e.occurred_at) == (
                wallet_of[j],
                first.meter,
                first.quantity,
                first.occurred_at,
            )
            if not same:
                results.append(_conflict(e))
            elif outcome.recorded:
                results.append(replace(outcome, status="duplicate"))  # the first's outcome
            else:
                results.append(outcome)  # refused for its content: the same refusal
            continue
        first_seen[rid] = i
        results.append(batch.rate(e, wallet_of[i]))

    # The event rows first, before any debit: a concurrent batch that recorded one of these
    # event ids (for another wallet, so under no lock of ours) has committed by the time
    # the insert returns, and this batch runs again from the start and sees its row.
    if not await repo.insert_events(conn, batch.rows):
        await repo.retry_transaction(conn)
    for debited in await ws.consume_credits_many(conn, batch.debits):
        # Planned against the balances read under the lock, with keys no line has yet: a
        # refusal here is a bug, and the whole batch rolls back rather than half apply.
        if debited.error is not None:
            raise debited.error
    await debts.record(conn, repayments)
    await repo.add_to_aggregates(conn, batch.aggregates)
    await repo.add_debts(conn, batch.incurred)
    log.info(
        "usage.batch.recorded",
        source=source,
        events=len(events),
        recorded=len(batch.rows),
        debits=len(batch.debits),
    )
    return results
