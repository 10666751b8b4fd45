"""Paying a settlement: its transfer at Cashfree Payouts and the one state machine that
webhooks, the status sync and the transfer command all converge on.

    pending --sent--> processing --SUCCESS--> paid --REVERSED--> reversed
       |                  |  ^
       |                  |  +-- retryable failure: a new attempt (new transfer_id), later
       +------------------+--> failed  (needs new details, needs review, attempts used up,
                                        Cashfree refused the create outright, or the
                                        payee, or its community, was suspended before an
                                        attempt was sent)

`process` runs with the settlement's row locked across the Cashfree call (as refunds do):
the check of the current attempt, the call and recording its answer are one step against
every other processor of the settlement. Every move is conditional on the status it starts
from and every journal is keyed by the settlement and the step, so a duplicate webhook, a
sync racing a webhook or a redelivered command changes nothing twice.

No money can go out twice: an attempt's `transfer_id` is fixed before its commit and
Cashfree keeps it unique (the client folds a 409 into the transfer it names); a new attempt
is only made after the previous one is known terminal (FAILED or REJECTED, Cashfree's word).

Cashfree's webhooks are not believed as they are: they only prompt a look at the transfer
through the API, whose answer is applied.

Before an attempt is sent, the payee must still be active, and a community payee's community
too (CommDesk's directory, `community_gate`; asked under the settlement's row lock, which
the Cashfree call holds as well). A directory that does not answer sends nothing and
changes nothing (`TransferDeferred`: the message's retry ladder, then the sync, ask again);
it never fails a settlement.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.errors import SettlementNotFound
from commdesk_billing.gateway.errors import (
    CashfreeAuthError,
    CashfreeConflict,
    CashfreeNotFound,
    CashfreeRejected,
)
from commdesk_billing.gateway.payout_codes import Outcome
from commdesk_billing.gateway.payout_models import Transfer
from commdesk_billing.gateway.payouts import CashfreePayoutsClient
from commdesk_billing.modules.billing import events as billing_events
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.ledger.model import Journal, house_account_id
from commdesk_billing.modules.payees import targets
from commdesk_billing.modules.settlements import community_gate
from commdesk_billing.modules.settlements import repository as repo
from commdesk_billing.modules.settlements.model import (
    ENDED,
    OPEN,
    Attempt,
    AttemptStatus,
    Settlement,
    SettlementStatus,
)
from commdesk_billing.modules.settlements.service import first_attempt
from commdesk_billing.queues import outbox

log = structlog.get_logger(__name__)

_PAID = frozenset({SettlementStatus.paid})


class TransferDeferred(Exception):
    """Not sent now, nothing changed: CommDesk's community directory did not answer, so
    whether the community may be paid is unknown. Not a refusal: retried (the message's
    retry ladder; past it, the sync announces the settlement again)."""


class TransferMismatch(Exception):
    """Cashfree holds a transfer under our id that is not the one we asked for: never paid
    around, a person looks (the message goes to the dead letters)."""


async def process(
    conn: AsyncConnection,
    client: CashfreePayoutsClient,
    settings: Settings,
    communities: CommunityDirectory,
    settlement_id: uuid.UUID,
    *,
    source: str,
) -> SettlementStatus:
    """Bring one settlement forward: send its current attempt, or ask about it; for a paid
    settlement asked about (a webhook, the sync), look for a reversal. Its status after."""
    s = await repo.get(conn, settlement_id, lock=True)
    if s is None:
        raise SettlementNotFound(f"settlement {settlement_id} does not exist")
    now = datetime.now(UTC)
    attempts = await repo.attempts(conn, s.id)
    if s.status in ENDED:
        return s.status
    if s.status is SettlementStatus.paid:
        if source not in ("webhook", "manual", "sync"):
            return s.status  # a repeated transfer command: nothing to do
        [paid] = [a for a in attempts if a.status is AttemptStatus.success]
        answer = await client.get_transfer(transfer_id=paid.transfer_id)
        status = await apply(conn, settings, s, paid, answer, now)
        await repo.mark_synced(conn, s.id, now)
        return status
    current = attempts[-1]
    if current.status not in (AttemptStatus.new, AttemptStatus.sent):
        return s.status  # a retry scheduled by `apply` always adds an open attempt
    if current.status is AttemptStatus.new:
        if current.attempt > 1 and now < _due(settings, current):
            # A retry waits out `settlement_retry_after_s` (its delayed command sends it);
            # the sync, a late webhook or a person asking meanwhile must not send it early.
            return s.status
        if not await targets.is_active(conn, s.payee_id):
            return await _not_sent(
                conn, client, settings, s, current, now, "payee_suspended", "the payee"
            )
        held = await community_gate.hold(communities, s.payable_code)
        if held == community_gate.UNAVAILABLE:
            log.warning("settlement.transfer.deferred", settlement_id=str(s.id), reason=held)
            raise TransferDeferred(f"settlement {s.id}: {held}")
        if held is not None:
            return await _not_sent(conn, client, settings, s, current, now, held, "its community")
    try:
        if current.status is AttemptStatus.new:
            answer = await client.create_transfer(
                transfer_id=current.transfer_id,
                amount_paise=current.amount_paise,
                beneficiary_id=s.beneficiary_id,
                mode=s.transfer_mode,
                remarks="CommDesk settlement",
            )
        else:
            answer = await client.get_transfer(transfer_id=current.transfer_id)
    except CashfreeConflict as exc:
        raise TransferMismatch(f"{current.transfer_id}: {exc}") from exc
    except CashfreeRejected as exc:
        if isinstance(exc, CashfreeAuthError) or current.status is not AttemptStatus.new:
            raise  # our credentials, or a lookup refused: asked again, alerting as DLQ
        # Cashfree refused the create outright (unknown beneficiary, a bad amount): no
        # transfer exists under this id (a create it had taken would answer 409, folded
        # into the transfer by the client). Back to payable, for a person to look at.
        await repo.update_attempt(
            conn,
            current.id,
            status=AttemptStatus.failed,
            at=now,
            cf_transfer_id=None,
            cf_status="REFUSED",
            status_code=exc.code,
            utr=None,
        )
        await _fail(conn, s, f"create_refused:{exc.code or exc.status}", str(exc), now)
        return SettlementStatus.failed
    status = await apply(conn, settings, s, current, answer, now)
    await repo.mark_synced(conn, s.id, now)
    return status


# The retry's command is delivered at its due time by the outbox relay's clock; a worker's
# clock a little behind must not turn it away (the sync would send it only much later).
_CLOCK_SLACK = timedelta(seconds=2)


def _due(settings: Settings, attempt: Attempt) -> datetime:
    """When a retry attempt may be sent."""
    return attempt.created_at + timedelta(seconds=settings.settlement_retry_after_s) - _CLOCK_SLACK


async def _not_sent(
    conn: AsyncConnection,
    client: CashfreePayoutsClient,
    settings: Settings,
    s: Settlement,
    current: Attempt,
    now: datetime,
    code: str,
    who: str,
) -> SettlementStatus:
    """The payee (or its community: `code` says which) was suspended after the settlement
    was made: a suspended payee or community is never paid out, so the attempt is not sent
    and the gross goes back to payable (settled anew once it is active again). Unless
    Cashfree has it already: an attempt still `new` may have been created by a worker that
    died before recording it, and that transfer is followed like any other (failing it
    back to payable would pay it twice)."""
    try:
        answer = await client.get_transfer(transfer_id=current.transfer_id)
    except CashfreeNotFound:
        await repo.update_attempt(
            conn,
            current.id,
            status=AttemptStatus.failed,
            at=now,
            cf_transfer_id=None,
            cf_status="NOT_SENT",
            status_code=code.upper(),
            utr=None,
        )
        reason = f"{who} was suspended before it was paid"
        if code not in ("payee_suspended", community_gate.SUSPENDED):
            reason = f"{who} may not be paid ({code}) and was not"
        await _fail(conn, s, code, reason, now)
        return SettlementStatus.failed
    status = await apply(conn, settings, s, current, answer, now)
    await repo.mark_synced(conn, s.id, now)
    return status


async def apply(
    conn: AsyncConnection,
    settings: Settings,
    s: Settlement,
    attempt: Attempt,
    t: Transfer,
    at: datetime,
) -> SettlementStatus:
    """Move the settlement and its attempt on Cashfree's answer about that attempt."""
    if t.transfer_id != attempt.transfer_id or (
        t.transfer_amount_paise is not None and t.transfer_amount_paise != attempt.amount_paise
    ):
        raise TransferMismatch(
            f"{attempt.transfer_id}: Cashfree answers {t.transfer_id} of "
            f"{t.transfer_amount_paise} paise, we sent {attempt.amount_paise}"
        )
    outcome = t.outcome
    code = t.status_code

    async def attempt_is(status: AttemptStatus) -> None:
        await repo.update_attempt(
            conn,
            attempt.id,
            status=status,
            at=at,
            cf_transfer_id=t.cf_transfer_id,
            cf_status=t.status,
            status_code=code,
            utr=t.transfer_utr,
        )

    if outcome is Outcome.IN_FLIGHT or (outcome is Outcome.PAID and not t.transfer_utr):
        # SUCCESS without a UTR is not yet shown to be paid: asked again later. (Never
        # seen of a transfer already paid; were it, the paid attempt stays as it is.)
        if s.status not in OPEN:
            return s.status
        await attempt_is(AttemptStatus.sent)
        await repo.move(
            conn,
            s.id,
            to=SettlementStatus.processing,
            allowed=frozenset({SettlementStatus.pending}),
            at=at,
        )
        return SettlementStatus.processing
    if outcome in (Outcome.PAID, Outcome.REVERSED):
        if s.status in OPEN:
            await attempt_is(AttemptStatus.success)
            await _paid(conn, s, attempt, t.transfer_utr or "", at)
        if outcome is Outcome.PAID:
            return SettlementStatus.paid
        await attempt_is(AttemptStatus.reversed)
        if await repo.move(
            conn,
            s.id,
            to=SettlementStatus.reversed,
            allowed=_PAID,
            at=at,
            failure_code=code,
            failure_reason=t.status_description or f"reversed: {code}",
        ):
            await post_journal(conn, _undo(s, "reversed", code, at))
            await _tell(conn, s, "settlement.reversed", code, t.status_description)
        return SettlementStatus.reversed
    # FAILED or REJECTED: terminal for this attempt.
    if s.status not in OPEN:
        return s.status
    await attempt_is(AttemptStatus.failed)
    if outcome is Outcome.RETRY and attempt.attempt < settings.settlement_max_attempts:
        await _retry_later(conn, settings, s, attempt, code, at)
        return SettlementStatus.processing
    why = {
        Outcome.RETRY: "attempts_exhausted",
        Outcome.NEW_DETAILS: "needs_new_bank_details",
        Outcome.REVIEW: "needs_review",
    }[outcome]
    await _fail(conn, s, f"{why}:{code}", t.status_description or why, at)
    return SettlementStatus.failed


async def _paid(
    conn: AsyncConnection, s: Settlement, attempt: Attempt, utr: str, at: datetime
) -> None:
    if await repo.move(conn, s.id, to=SettlementStatus.paid, allowed=OPEN, at=at, utr=utr):
        await post_journal(
            conn,
            postings.settlement_paid(
                settlement_id=s.id,
                payee=s.payable_code,
                net=s.net_paise,
                transfer_id=attempt.transfer_id,
                utr=utr,
                at=at,
            ),
        )
        # The payee is told (notifications.billing), in the transaction that paid it.
        paid = {
            "settlement_id": str(s.id),
            "payee_id": str(s.payee_id),
            "gross_paise": s.gross_paise,
            "net_paise": s.net_paise,
            "utr": utr,
        }
        await outbox.announce(conn, "settlement.paid", paid, correlation_id=str(s.id))
        log.info("settlement.paid", settlement_id=str(s.id), utr=utr, net_paise=s.net_paise)


async def _retry_later(
    conn: AsyncConnection,
    settings: Settings,
    s: Settlement,
    attempt: Attempt,
    code: str | None,
    at: datetime,
) -> None:
    """A new attempt under a new transfer_id, sent after the retry wait."""
    await repo.insert_attempt(conn, first_attempt(s, attempt.attempt + 1, at))
    await repo.move(
        conn,
        s.id,
        to=SettlementStatus.processing,
        allowed=frozenset({SettlementStatus.pending}),
        at=at,
    )
    await outbox.send(
        conn,
        "settlements.processing",
        "settlement.transfer",
        {"settlement_id": str(s.id), "source": "retry"},
        correlation_id=str(s.id),
        deliver_at=at + timedelta(seconds=settings.settlement_retry_after_s),
    )
    log.warning(
        "settlement.transfer.retry",
        settlement_id=str(s.id),
        failed_attempt=attempt.attempt,
        status_code=code,
    )


def _undo(s: Settlement, step: str, code: str | None, at: datetime) -> Journal:
    build = postings.settlement_reversed if step == "reversed" else postings.settlement_failed
    return build(
        settlement_id=s.id,
        payee=s.payable_code,
        payable_account_id=house_account_id(s.payable_code),
        gross=s.gross_paise,
        tds=s.tds_paise,
        tcs=s.tcs_paise,
        fee=s.fee_paise,
        net=s.net_paise,
        at=at,
        reason=code or step,
    )


async def _fail(conn: AsyncConnection, s: Settlement, code: str, reason: str, at: datetime) -> None:
    if await repo.move(
        conn,
        s.id,
        to=SettlementStatus.failed,
        allowed=OPEN,
        at=at,
        failure_code=code[:100],
        failure_reason=reason,
    ):
        await post_journal(conn, _undo(s, "failed", code, at))
        await _tell(conn, s, "settlement.failed", code, reason)


async def _tell(
    conn: AsyncConnection, s: Settlement, event: str, code: str | None, reason: str | None
) -> None:
    """The payee is told (a billing event, and the event announced to whatever queue
    consumes it: notifications.billing), and operations are alerted: an
    error-level log event, which the alert rules count."""
    data = {
        "settlement_id": str(s.id),
        "payee_id": str(s.payee_id),
        "gross_paise": s.gross_paise,
        "net_paise": s.net_paise,
        "code": code,
        "reason": (reason or "")[:500],
    }
    await billing_events.record(conn, event, amount_paise=s.gross_paise, data=data)
    if event == "settlement.reversed":
        await outbox.announce(conn, "settlement.reversed", data, correlation_id=str(s.id))
    else:
        await outbox.announce(conn, "settlement.failed", data, correlation_id=str(s.id))
    log.error(event, **data)
