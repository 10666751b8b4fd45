"""Making settlements (DESIGN §11): per payee that can be paid now, under the payee's lock,
what its payable offers up to the cut-off becomes one settlement, one journal and its first
transfer attempt, and the command that sends the transfer (after this commit, through the
outbox: no money moves before the settlement is on the books).

"Never settled twice for the same entries" rests on three things: the payable read is
balance-based (`ledger.reads.payable_for_settlement`: what earlier settlements took is gone
from it, whatever their cut-off), it is read under the payee's row lock (`payees.targets
.lock_target`; two runs of one payee queue there, the second sees the first's journal), and
a scheduled period settles a payee at most once (UNIQUE payee + period).

A community payee is settled only while its community is active in CommDesk's directory
(`community_gate`): asked before the payee's transaction (or, for a run in one transaction,
before its first lock), so no MongoDB wait ever holds a payee's row lock. A community that
may not be paid, or a directory that does not answer, makes the payee wait (nothing is
posted); the next run asks again.

Lock order: the payee's row, then nothing else (the settlement row is new). Transfers
(`transfers.py`) lock a settlement's row only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, timezone

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import SettlementNotFound
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.ledger.model import house_account_id
from commdesk_billing.modules.ledger.reads import payable_for_settlement
from commdesk_billing.modules.payees import targets
from commdesk_billing.modules.payees.model import PayoutMethod, PayoutTarget
from commdesk_billing.modules.settlements import community_gate, figures
from commdesk_billing.modules.settlements import repository as repo
from commdesk_billing.modules.settlements.model import (
    Attempt,
    AttemptStatus,
    Settlement,
    SettlementStatus,
    Terms,
    transfer_id_of,
)
from commdesk_billing.queues import outbox

log = structlog.get_logger(__name__)

IST = timezone(timedelta(hours=5, minutes=30))


def terms_of(settings: Settings) -> Terms:
    return Terms(
        reserve_bps=settings.settlement_reserve_bps,
        reserve_days=settings.settlement_reserve_days,
        tds_bps=settings.settlement_tds_bps,
        tcs_bps=settings.settlement_tcs_bps,
        fee_paise=settings.payout_fee_paise,
        minimum_paise=settings.settlement_minimum_paise,
    )


def period_of(settings: Settings, at: datetime) -> tuple[str, datetime]:
    """The scheduled period `at` falls in: its key and its cut-off, the period's start at
    midnight in India (a weekly period starts on Monday). A scheduled run settles what was
    earned before the period it runs in."""
    local = at.astimezone(IST).date()
    if settings.settlement_period == "weekly":
        local -= timedelta(days=local.weekday())
    start = datetime.combine(local, time(0), IST)
    return f"{settings.settlement_period}:{local.isoformat()}", start.astimezone(UTC)


@dataclass(frozen=True)
class Outcome:
    """What a run did for one payee: a settlement made (or found: this period's), or why
    nothing was."""

    payee_id: uuid.UUID
    settlement: Settlement | None = None
    created: bool = False
    # not_payable | community_suspended | community_not_found | community_record_invalid |
    # community_directory_unavailable | needs_new_bank_details | nothing_payable |
    # below_minimum
    waiting: str | None = None
    available_paise: int = 0


async def settle_payee(
    conn: AsyncConnection,
    payee_id: uuid.UUID,
    *,
    terms: Terms,
    period: str,
    cut_off: datetime,
    by: str,
    community_hold: str | None,
    at: datetime | None = None,
) -> Outcome:
    """Settle one payee for `period` up to `cut_off`, in the caller's transaction.
    `community_hold`: what `community_gate.hold` answered for this payee, asked by the
    caller before this transaction took any lock (None: no community holds it)."""
    at = at or datetime.now(UTC)
    target = await targets.lock_target(conn, payee_id, at)
    if target is None:
        # Suspended, unverified, no beneficiary yet, or in its cooling-off: it keeps
        # accruing, and is looked at again next period.
        return Outcome(payee_id, waiting="not_payable")
    existing = await repo.of_period(conn, payee_id, period)
    if existing is not None:
        return Outcome(payee_id, settlement=existing)
    if community_hold is not None:
        # Its community is suspended or unknown to CommDesk (or the directory did not
        # answer): it keeps accruing, and is asked about again next run.
        log.info("settlement.waiting", payee_id=str(payee_id), reason=community_hold)
        return Outcome(payee_id, waiting=community_hold)
    if await repo.destination_refused(conn, payee_id, target.account_id):
        # Cashfree said this account is wrong or blocked: sending there again every period
        # would only fail (or bounce) again. It keeps accruing until the payee gives an
        # account again (a new version).
        return Outcome(payee_id, waiting="needs_new_bank_details")
    account = house_account_id(target.payee.payable_code)
    payable = await payable_for_settlement(conn, account, cut_off)
    held = await repo.reserves_held(conn, payee_id, at)
    result = figures.settle(payable, held, terms)
    if isinstance(result, figures.Waiting):
        log.info(
            "settlement.waiting",
            payee_id=str(payee_id),
            reason=result.reason,
            available_paise=result.available_paise,
            net_paise=result.net_paise,
        )
        return Outcome(payee_id, waiting=result.reason, available_paise=result.available_paise)
    settlement = await _create(conn, target, result, terms, period, cut_off, by, at)
    return Outcome(payee_id, settlement=settlement, created=True)


async def _create(
    conn: AsyncConnection,
    target: PayoutTarget,
    f: figures.Figures,
    terms: Terms,
    period: str,
    cut_off: datetime,
    by: str,
    at: datetime,
) -> Settlement:
    settlement_id = uuid.uuid4()
    payee = target.payee
    journal = postings.settlement_created(
        settlement_id=settlement_id,
        payee=payee.payable_code,
        payable_account_id=house_account_id(payee.payable_code),
        gross=f.gross_paise,
        tds=f.tds_paise,
        tcs=f.tcs_paise,
        fee=f.fee_paise,
        net=f.net_paise,
        at=at,
    )
    await post_journal(conn, journal)
    settlement = Settlement(
        id=settlement_id,
        payee_id=payee.id,
        payable_code=payee.payable_code,
        period=period,
        cut_off=cut_off,
        account_id=target.account_id,
        beneficiary_id=target.beneficiary_id,
        account_mask=target.account_mask,
        transfer_mode="upi" if target.method is PayoutMethod.upi else "banktransfer",
        payable_paise=f.payable_paise,
        reserves_held_paise=f.reserves_held_paise,
        reserve_bps=terms.reserve_bps,
        reserve_paise=f.reserve_paise,
        reserve_until=at + timedelta(days=terms.reserve_days),
        gross_paise=f.gross_paise,
        tds_bps=terms.tds_bps,
        tds_paise=f.tds_paise,
        tcs_bps=terms.tcs_bps,
        tcs_paise=f.tcs_paise,
        fee_paise=f.fee_paise,
        net_paise=f.net_paise,
        status=SettlementStatus.pending,
        failure_code=None,
        failure_reason=None,
        utr=None,
        journal_id=journal.id,
        created_by=by,
        created_at=at,
        updated_at=at,
        paid_at=None,
        ended_at=None,
        synced_at=at,
    )
    if not await repo.insert(conn, settlement):
        # The payee's lock makes this unreachable; were it reached, the journal above rolls
        # back with the transaction.
        raise RuntimeError(f"payee {payee.id} has a settlement for {period} already")
    await repo.insert_attempt(conn, first_attempt(settlement, 1, at))
    await outbox.send(
        conn,
        "settlements.processing",
        "settlement.transfer",
        {"settlement_id": str(settlement_id), "source": "created"},
        correlation_id=str(settlement_id),
    )
    log.info(
        "settlement.created",
        settlement_id=str(settlement_id),
        payee_id=str(payee.id),
        period=period,
        gross_paise=f.gross_paise,
        net_paise=f.net_paise,
    )
    return settlement


def first_attempt(s: Settlement, n: int, at: datetime) -> Attempt:
    return Attempt(
        id=uuid.uuid4(),
        settlement_id=s.id,
        attempt=n,
        transfer_id=transfer_id_of(s.id, n),
        amount_paise=s.net_paise,
        status=AttemptStatus.new,
        cf_transfer_id=None,
        cf_status=None,
        status_code=None,
        utr=None,
        created_at=at,
        updated_at=at,
    )


async def run(
    engine: AsyncEngine,
    settings: Settings,
    communities: CommunityDirectory,
    *,
    by: str,
    payee_id: uuid.UUID | None = None,
    period: str | None = None,
    cut_off: datetime | None = None,
    at: datetime | None = None,
) -> list[Outcome]:
    """A run: every payee that can be paid now (or the one named), each in its own
    transaction, so one payee's trouble never holds the others' money. Without a period,
    the scheduled period `at` falls in (its start the cut-off); a period of the caller's
    own is settled up to `cut_off`, or `at`."""
    at = at or datetime.now(UTC)
    if period is None:
        period, scheduled = period_of(settings, at)
        cut_off = cut_off or scheduled
    elif cut_off is None:
        cut_off = at  # a period of the caller's own: everything earned until now
    terms = terms_of(settings)
    codes = await in_transaction(engine, lambda c: _payable_codes(c, payee_id, at))
    outcomes = []
    for pid, code in codes.items():
        # Asked before the payee's transaction: its row lock never waits on MongoDB.
        held = await community_gate.hold(communities, code) if code is not None else None

        async def one(
            conn: AsyncConnection, pid: uuid.UUID = pid, held: str | None = held
        ) -> Outcome:
            assert period is not None and cut_off is not None
            return await settle_payee(
                conn,
                pid,
                terms=terms,
                period=period,
                cut_off=cut_off,
                by=by,
                community_hold=held,
                at=at,
            )

        outcomes.append(await in_transaction(engine, one))
    return outcomes


async def _payable_codes(
    conn: AsyncConnection, payee_id: uuid.UUID | None, at: datetime
) -> dict[uuid.UUID, str | None]:
    """The payees a run looks at (the one named, or every one payable at `at`), each with
    its payable code (None: no such payee), in a stable order."""
    if payee_id is not None:
        return {payee_id: await targets.payable_code_of(conn, payee_id)}
    return {t.payee.id: t.payee.payable_code for t in await targets.payable_now(conn, at)}


async def run_in(
    conn: AsyncConnection,
    settings: Settings,
    communities: CommunityDirectory,
    *,
    by: str,
    run_id: str,
    payee_id: uuid.UUID | None,
    at: datetime,
) -> list[Outcome]:
    """An on-demand run (finance), in the caller's one transaction (the keyed request's):
    its period is the run's own (`run:<id>`), its cut-off now. Every community is asked
    about before the first payee is locked: no MongoDB wait while a payee's row is held."""
    terms = terms_of(settings)
    codes = await _payable_codes(conn, payee_id, at)
    holds = {
        pid: await community_gate.hold(communities, code) if code is not None else None
        for pid, code in codes.items()
    }
    return [
        await settle_payee(
            conn,
            pid,
            terms=terms,
            period=f"run:{run_id}",
            cut_off=at,
            by=by,
            community_hold=holds[pid],
            at=at,
        )
        for pid in codes
    ]


async def require(conn: AsyncConnection, settlement_id: uuid.UUID) -> Settlement:
    s = await repo.get(conn, settlement_id)
    if s is None:
        raise SettlementNotFound(f"settlement {settlement_id} does not exist")
    return s


async def recent(
    conn: AsyncConnection,
    *,
    payee_id: uuid.UUID | None = None,
    status: SettlementStatus | None = None,
    limit: int = 50,
) -> list[Settlement]:
    """Settlements newest first, of one payee or of all (staff reads: the finance console)."""
    if payee_id is not None:
        rows = await repo.of_payee(conn, payee_id, limit=limit)
        return [s for s in rows if status is None or s.status is status]
    return await repo.recent(conn, status=None if status is None else status.value, limit=limit)
