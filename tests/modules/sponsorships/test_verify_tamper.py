"""The sponsorship checks of `ledger verify`, each shown failing on a deliberate tamper.

A sponsorship is paid, handed over and one of its two milestones released by the
application's own entry points (the payment row as `ordering.open_charge` writes it, the
move to PAID as verification makes it, `credit_payment` with the sponsorship handover as
the worker calls it, `service.deliver` and `service.release`), in a scratch database; the
books are clean; then one record is changed behind the application's back, as only a
superuser could, and the named checks catch it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import MilestoneRefunded
from commdesk_billing.gateway.models import Refund as GatewayRefund
from commdesk_billing.modules.communities.directory import Community, CommunityStatus
from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.payments import repository as payments_repo
from commdesk_billing.modules.payments.crediting import credit_payment
from commdesk_billing.modules.payments.state import Status, move
from commdesk_billing.modules.refunds import processing, requesting
from commdesk_billing.modules.refunds import repository as refunds_repo
from commdesk_billing.modules.refunds.model import RefundStatus
from commdesk_billing.modules.refunds.schemas import RefundRequest
from commdesk_billing.modules.sponsorships import invariants, service
from commdesk_billing.modules.sponsorships import repository as repo
from commdesk_billing.modules.sponsorships.figures import figures
from commdesk_billing.modules.sponsorships.model import (
    Sponsorship,
    SponsorshipPath,
    SponsorshipStatus,
)
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.security.jwt import Principal, Role
from tests.harness.databases import tamper

_TABLES = ("ledger_entries", "sponsorships", "sponsorship_milestones", "payments")
HANDOVERS = {service.KIND: service.on_paid}


async def _paid(conn: AsyncConnection, cid: str) -> uuid.UUID:
    wallet = await ws.get_or_create_user_wallet(conn, f"sponsor-{uuid.uuid4().hex[:8]}")
    fig = figures(100_000, fee_bps=500, gst_rate_bp=1800, buyer_state="29", seller_state="29")
    payment_id = uuid.uuid4()
    assert await payments_repo.insert(
        conn,
        {
            "id": payment_id,
            "user_id": wallet.owner_id,
            "wallet_id": wallet.id,
            "order_id": f"cdb_{uuid.uuid4().hex}",
            "idempotency_key": uuid.uuid4().hex,
            "request_hash": "h",
            "kind": service.KIND,
            "amount_paise": fig.total_paise,
            "passthrough_paise": fig.amount_paise,
            "taxable_paise": fig.fee_paise,
            "gst_amount_paise": fig.gst_paise,
            "cgst_paise": fig.fee.cgst_paise,
            "sgst_paise": fig.fee.sgst_paise,
            "igst_paise": 0,
            "gst_mode": "exclusive",
            "gst_rate_bp": 1800,
            "buyer_state": "29",
            "seller_state": "29",
            "base_credits": 0,
            "bonus_credits": 0,
            "status": "CREATED",
            "order_expires_at": datetime.now(UTC) + timedelta(hours=1),
            "metadata": {},
        },
    )
    now = datetime.now(UTC)
    sponsorship = Sponsorship(
        id=uuid.uuid4(),
        payment_id=payment_id,
        community_id=cid,
        sponsor_user_id=wallet.owner_id,
        path=SponsorshipPath.escrow,
        purpose="tamper",
        amount_paise=fig.amount_paise,
        fee_bps=500,
        fee_paise=fig.fee_paise,
        gst_paise=fig.gst_paise,
        total_paise=fig.total_paise,
        status=SponsorshipStatus.awaiting_payment,
        funded_at=None,
        funded_journal_id=None,
        created_by="t",
        created_at=now,
        updated_at=now,
    )
    await repo.insert(conn, sponsorship, [("One", 60_000), ("Two", 40_000)])
    assert await move(conn, payment_id, Status.PAID, reason="test", paid_at=now) is not None
    assert await credit_payment(conn, payment_id, HANDOVERS)
    return sponsorship.id


async def _paid_one_released(conn: AsyncConnection, cid: str) -> uuid.UUID:
    sid = await _paid(conn, cid)
    community = Community(cid, "C", ("owner",), CommunityStatus.active)
    owner = Principal(sub="owner", role=Role.member, scopes=frozenset())
    finance = Principal(sub="fin", role=Role.finance_admin, scopes=frozenset())
    await service.deliver(conn, owner, community, sid, 1)
    await service.release(conn, finance, sid, 1)
    return sid


async def _paid_two_refunded(conn: AsyncConnection, cid: str) -> uuid.UUID:
    """Another sponsorship, milestone 2 refunded (Cashfree's SUCCESS applied as the refund
    consumer applies it); returns the refund's id."""
    sid = await _paid(conn, cid)
    s = await service.require(conn, sid)
    finance = Principal(sub="fin", role=Role.finance_admin, scopes=frozenset())
    refund = await requesting.open_refund(
        conn,
        Settings(),
        finance,
        s.payment_id,
        RefundRequest(reason="test refund", milestones=[2]),
        uuid.uuid4().hex,
    )
    answer = GatewayRefund.model_validate(
        {"refund_id": refund.refund_ref, "refund_amount": "423.60", "refund_status": "SUCCESS"}
    )
    assert (
        await processing.apply_gateway(conn, refund, answer, source="test") == RefundStatus.SUCCESS
    )
    return refund.id


_RELEASE_1 = (
    "(SELECT release_journal_id FROM sponsorship_milestones WHERE sponsorship_id = $1 AND seq = 1)"
)
_FUNDED = "(SELECT funded_journal_id FROM sponsorships WHERE id = $1)"
CASES: dict[str, tuple[str, tuple[object, ...], set[str]]] = {
    # The release's journal moved twice the milestone (still balanced).
    "release journal doubled": (
        f"UPDATE ledger_entries SET amount = amount * 2 WHERE journal_id = {_RELEASE_1}",
        (),
        {"sponsorship_release", "sponsorship_escrow", "sponsorship_payable"},
    ),
    # A milestone's row says more than the sponsorship holds for it.
    "milestone row": (
        "UPDATE sponsorship_milestones SET amount_paise = amount_paise + 100 "
        "WHERE sponsorship_id = $1 AND seq = 2",
        (),
        {"sponsorship_escrow"},
    ),
    # The funding journal's escrow leg booked as fee revenue instead.
    "escrow booked as revenue": (
        f"UPDATE ledger_entries SET account_id = $2 WHERE journal_id = {_FUNDED} "
        "AND account_id = $3",
        (House.SPONSORSHIP_FEE_REVENUE, House.SPONSORSHIP_ESCROW),
        {"sponsorship_funding", "sponsorship_escrow", "sponsorship_fees"},
    ),
    # A released milestone put back to delivered: its journal is named by nothing, and the
    # escrow no longer holds what the rows say is unreleased.
    "release undone on the row": (
        "UPDATE sponsorship_milestones SET status = 'delivered', release_journal_id = NULL, "
        "released_at = NULL, released_by = NULL WHERE sponsorship_id = $1 AND seq = 1",
        (),
        {"sponsorship_release", "sponsorship_escrow", "sponsorship_payable"},
    ),
    # The row's fee and total a paisa off its rate, its payment and its journal.
    "sponsorship row": (
        "ALTER TABLE sponsorships DROP CONSTRAINT sponsorships_check1; "
        "UPDATE sponsorships SET fee_paise = fee_paise + 1, total_paise = total_paise + 1 "
        "WHERE id = $1",
        (),
        {"sponsorship_funding", "sponsorship_fees"},
    ),
    # Funded, but its payment was never handed over.
    "payment not handed over": (
        "UPDATE payments SET status = 'PAID', credited_at = NULL "
        "WHERE id = (SELECT payment_id FROM sponsorships WHERE id = $1)",
        (),
        {"sponsorship_funding"},
    ),
}
# Tampers with the other sponsorship's refund ($1: the refund's id).
_REFUND_JOURNAL = (
    "(SELECT id FROM ledger_journals WHERE idempotency_key = 'refund:' || $1 || ':inr')"
)
REFUND_CASES: dict[str, tuple[str, set[str]]] = {
    # The refund's journal took twice what its row says out of escrow and fee revenue.
    "refund journal doubled": (
        f"UPDATE ledger_entries SET amount = amount * 2 WHERE journal_id = {_REFUND_JOURNAL}",
        {"sponsorship_refund", "sponsorship_escrow", "sponsorship_fees"},
    ),
    # The refunded milestone put back in escrow on its row: the refund names nothing, and
    # the sponsorship, completed, has an open milestone the escrow does not hold.
    "refunded milestone put back": (
        "UPDATE sponsorship_milestones SET status = 'pending', refund_id = NULL "
        "WHERE refund_id = $1",
        {"sponsorship_refund", "sponsorship_escrow"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_sponsorship_check_catches_its_tamper(
    case: str, scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    sid = await in_transaction(scratch_engine, lambda c: _paid_one_released(c, cid))
    clean = await verify_ledger(scratch_engine)
    assert clean.ok, [str(f) for f in clean.findings]
    sql, args, expected = CASES[case]
    for statement in sql.split("; "):
        await tamper(
            scratch_database_url,
            statement,
            *(() if "$1" not in statement else (sid, *args)),
            tables=_TABLES,
        )
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert {f.check for f in report.findings} == expected, report.findings


@pytest.mark.parametrize("case", list(REFUND_CASES))
async def test_the_refund_checks_catch_their_tampers(
    case: str, scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    refund_id = await in_transaction(scratch_engine, lambda c: _paid_two_refunded(c, cid))
    clean = await verify_ledger(scratch_engine)
    assert clean.ok, [str(f) for f in clean.findings]
    sql, expected = REFUND_CASES[case]
    await tamper(scratch_database_url, sql, str(refund_id), tables=_TABLES)
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert {f.check for f in report.findings} == expected, report.findings


async def test_repeats_post_nothing_twice(scratch_engine: AsyncEngine) -> None:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    sid = await in_transaction(scratch_engine, lambda c: _paid_one_released(c, cid))

    async def again(conn: AsyncConnection) -> None:
        s = await service.require(conn, sid)
        # The payment is CREDITED: a redelivered `payment.paid` does nothing.
        assert not await credit_payment(conn, s.payment_id, HANDOVERS)
        # The handover itself, called again, finds the sponsorship funded.
        payment = await payments_repo.get(conn, s.payment_id)
        assert payment is not None
        await service.on_paid(conn, payment, datetime.now(UTC))

    await in_transaction(scratch_engine, again)
    assert (await verify_ledger(scratch_engine)).ok
    async with scratch_engine.connect() as conn:
        [m1, m2] = await repo.milestones(conn, sid)
        assert (m1.status.value, m2.status.value) == ("released", "pending")


async def test_a_sponsorship_payment_without_its_handover_is_never_credited(
    scratch_engine: AsyncEngine,
) -> None:
    """A worker built without the sponsorship handover refuses the payment (it
    dead-letters): no credits, no journal, the payment stays PAID for a worker that has it."""
    cid = f"c-{uuid.uuid4().hex[:8]}"
    sid = await in_transaction(scratch_engine, lambda c: _paid_one_released(c, cid))

    async def unpaid_again(conn: AsyncConnection) -> uuid.UUID:
        s = await service.require(conn, sid)
        await conn.execute(
            text("UPDATE payments SET status = 'PAID', credited_at = NULL WHERE id = :p"),
            {"p": s.payment_id},
        )
        return s.payment_id

    payment_id = await in_transaction(scratch_engine, unpaid_again)
    with pytest.raises(LookupError, match="nothing takes it over"):
        await in_transaction(scratch_engine, lambda c: credit_payment(c, payment_id))


async def _refund_again(conn: AsyncConnection, sid: uuid.UUID) -> None:
    s = await service.require(conn, sid)
    await service.begin_refund(conn, s.payment_id, [2])


async def test_an_open_refund_holds_its_milestones_until_cashfree_answers(
    scratch_engine: AsyncEngine,
) -> None:
    """While Cashfree works on a refund (CREATED, no worker here), its milestones can be
    neither delivered, released nor refunded again; its CANCELLED answer gives them back."""
    cid = f"c-{uuid.uuid4().hex[:8]}"
    sid = await in_transaction(scratch_engine, lambda c: _paid(c, cid))
    community = Community(cid, "C", ("owner",), CommunityStatus.active)
    owner = Principal(sub="owner", role=Role.member, scopes=frozenset())
    finance = Principal(sub="fin", role=Role.finance_admin, scopes=frozenset())

    async def refund_two(conn: AsyncConnection) -> uuid.UUID:
        await service.deliver(conn, owner, community, sid, 2)
        s = await service.require(conn, sid)
        refund = await requesting.open_refund(
            conn,
            Settings(),
            finance,
            s.payment_id,
            RefundRequest(reason="test refund", milestones=[2]),
            uuid.uuid4().hex,
        )
        return refund.id

    refund_id = await in_transaction(scratch_engine, refund_two)
    for attempt in (
        lambda c: service.release(c, finance, sid, 2),
        lambda c: service.deliver(c, owner, community, sid, 2),
        lambda c: _refund_again(c, sid),
    ):
        with pytest.raises(MilestoneRefunded):
            await in_transaction(scratch_engine, attempt)
    assert (await verify_ledger(scratch_engine)).ok

    async def cancelled(conn: AsyncConnection) -> None:
        refund = await refunds_repo.get(conn, refund_id, lock=True)
        assert refund is not None
        answer = GatewayRefund.model_validate(
            {
                "refund_id": refund.refund_ref,
                "refund_amount": refund.amount_paise / 100,
                "refund_status": "CANCELLED",
            }
        )
        await processing.apply_gateway(conn, refund, answer, source="test")

    await in_transaction(scratch_engine, cancelled)
    async with scratch_engine.connect() as conn:
        statuses = [m.status.value for m in await repo.milestones(conn, sid)]
    assert statuses == ["pending", "delivered"]  # back where each was
    await in_transaction(scratch_engine, lambda c: service.release(c, finance, sid, 2))
    assert (await verify_ledger(scratch_engine)).ok
