"""The split checks of `ledger verify`, each shown failing on a deliberate tamper.

In a scratch database, a community's payee and verified account and its Easy Split vendor
are recorded, a split sponsorship is paid and handed over, a third of its part refunded and
the rest settled to the vendor — by the application's own entry points (`credit_payment`
with the sponsorship handover, `requesting.open_refund` and `processing.apply_gateway`,
`settlements.apply` on the webhooks' models); the books are clean; then one record is
changed behind the application's back, as only a superuser could, and the named checks
catch it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.models import Order
from commdesk_billing.gateway.models import Refund as GatewayRefund
from commdesk_billing.gateway.split_models import VendorSettlementWebhook
from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.payees import repository as payees_repo
from commdesk_billing.modules.payees.model import (
    PayeeKind,
    PayoutAccount,
    PayoutMethod,
    Verification,
    beneficiary_id_for,
)
from commdesk_billing.modules.payments import repository as payments_repo
from commdesk_billing.modules.payments.crediting import credit_payment
from commdesk_billing.modules.payments.ordering import order_matches
from commdesk_billing.modules.payments.state import Status, move
from commdesk_billing.modules.refunds import processing, requesting
from commdesk_billing.modules.refunds import repository as refunds_repo
from commdesk_billing.modules.refunds.model import RefundStatus
from commdesk_billing.modules.refunds.schemas import RefundRequest
from commdesk_billing.modules.splits import invariants, settlements
from commdesk_billing.modules.splits import repository as splits_repo
from commdesk_billing.modules.splits.model import SplitVendor, vendor_id_for
from commdesk_billing.modules.sponsorships import invariants as sponsorship_invariants
from commdesk_billing.modules.sponsorships import repository as repo
from commdesk_billing.modules.sponsorships import service
from commdesk_billing.modules.sponsorships.figures import figures
from commdesk_billing.modules.sponsorships.model import (
    Sponsorship,
    SponsorshipPath,
    SponsorshipStatus,
)
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.security.jwt import Principal, Role
from tests.harness.databases import tamper

_TABLES = (
    "ledger_entries",
    "ledger_journals",
    "sponsorships",
    "vendor_settlements",
    "payments",
)
HANDOVERS = {service.KIND: service.on_paid}


async def _vendor(conn: AsyncConnection, cid: str) -> str:
    payee = await payees_repo.insert_payee(
        conn, kind=PayeeKind.community, subject_id=cid, display_name="C", by="t"
    )
    assert payee is not None
    now = datetime.now(UTC)
    account = PayoutAccount(
        id=uuid.uuid4(),
        payee_id=payee.id,
        version=1,
        method=PayoutMethod.upi,
        account_holder="Priya Sharma",
        account_sealed=None,
        account_fingerprint=uuid.uuid4().hex * 2,
        account_mask="pr***@upi",
        ifsc=None,
        vpa=f"p{uuid.uuid4().hex[:8]}@upi",
        verification_status=Verification.verified,
        name_match_result=None,
        name_match_min=None,
        name_match_score=None,
        name_at_bank=None,
        verification_ref=None,
        verification_detail=None,
        verified_at=now,
        beneficiary_id=beneficiary_id_for(payee.id, 1),
        payouts_blocked_until=now,
        cooling_off_s=0,
        created_by="t",
        created_at=now,
        superseded_at=None,
    )
    await payees_repo.insert_account(conn, account)
    vendor_id = vendor_id_for(cid)
    await splits_repo.upsert(
        conn,
        SplitVendor(
            community_id=cid,
            vendor_id=vendor_id,
            payee_id=payee.id,
            account_id=account.id,
            method="upi",
            account_mask=account.account_mask,
            name="Chess Club",
            email="t@example.com",
            phone="9876543210",
            account_type="BUSINESS",
            business_type="Education",
            pan_mask="XXXXXX234D",
            gstin=None,
            status="ACTIVE",
            remarks=None,
            status_checked_at=now,
            created_by="t",
            created_at=now,
            updated_at=now,
        ),
    )
    return vendor_id


async def _paid(conn: AsyncConnection, cid: str, vendor_id: str) -> uuid.UUID:
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
            "metadata": {"order_splits": [{"vendor_id": vendor_id, "amount_paise": 100_000}]},
        },
    )
    now = datetime.now(UTC)
    s = Sponsorship(
        id=uuid.uuid4(),
        payment_id=payment_id,
        community_id=cid,
        sponsor_user_id=wallet.owner_id,
        path=SponsorshipPath.easy_split,
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
        vendor_id=vendor_id,
    )
    await repo.insert(conn, s, [("Whole", 100_000)])
    assert await move(conn, payment_id, Status.PAID, reason="test", paid_at=now) is not None
    assert await credit_payment(conn, payment_id, HANDOVERS)
    return s.id


def _hook(vendor_id: str, settlement_id: str, status: str, rupees: str) -> Any:
    event = "CREATED" if status == "CREATED" else status
    return VendorSettlementWebhook.model_validate(
        {
            "type": f"VENDOR_SETTLEMENT_{event}",
            "data": {
                "settlement": {
                    "settlement_id": settlement_id,
                    "vendor_id": vendor_id,
                    "status": status,
                    "settlement_amount": rupees,
                }
            },
        }
    )


async def _world(conn: AsyncConnection, cid: str) -> dict[str, Any]:
    vendor_id = await _vendor(conn, cid)
    sid = await _paid(conn, cid, vendor_id)
    s = await service.require(conn, sid)
    finance = Principal(sub="fin", role=Role.finance_admin, scopes=frozenset())
    refund = await requesting.open_refund(
        conn,
        Settings(),
        finance,
        s.payment_id,
        RefundRequest(reason="test refund", amount_paise=30_000),
        uuid.uuid4().hex,
    )
    assert (refund.passthrough_paise, refund.amount_paise) == (30_000, 31_770)
    answer = GatewayRefund.model_validate(
        {"refund_id": refund.refund_ref, "refund_amount": "317.70", "refund_status": "SUCCESS"}
    )
    assert (
        await processing.apply_gateway(conn, refund, answer, source="test") == RefundStatus.SUCCESS
    )
    settlement_id = str(uuid.uuid4().int)[:9]
    for status in ("CREATED", "SUCCESS", "SUCCESS"):  # the second SUCCESS: a repeat
        await settlements.apply(conn, _hook(vendor_id, settlement_id, status, "700.00"))
    return {"sid": sid, "refund": refund.id, "settlement": settlement_id}


_FUNDED = "(SELECT funded_journal_id FROM sponsorships WHERE id = $1)"
_SETTLED = "(SELECT settled_journal_id FROM vendor_settlements WHERE settlement_id = $1)"
_REFUND = "(SELECT id FROM ledger_journals WHERE idempotency_key = 'refund:' || $1 || ':inr')"
# name → (statement, which of the world's ids is $1, extra args, the checks that catch it)
CASES: dict[str, tuple[str, str, tuple[object, ...], set[str]]] = {
    # The community's part booked into escrow instead of the vendor's due amount.
    "split part booked as escrow": (
        f"UPDATE ledger_entries SET account_id = $2 WHERE journal_id = {_FUNDED} "
        "AND account_id = $3",
        "sid",
        (House.SPONSORSHIP_ESCROW, House.VENDOR_SETTLEMENTS_DUE),
        {"sponsorship_funding", "sponsorship_escrow", "vendor_settlements_due"},
    ),
    # The funding journal names another vendor.
    "funding names another vendor": (
        "UPDATE ledger_journals SET metadata = jsonb_set(metadata, '{vendor_id}', "
        f"'\"cdbc_someone_else\"') WHERE id = {_FUNDED}",
        "sid",
        (),
        {"sponsorship_funding", "vendor_settlements_due"},
    ),
    # A settlement's row says a rupee more than its journal moved.
    "settlement row": (
        "UPDATE vendor_settlements SET amount_paise = amount_paise + 100 WHERE settlement_id = $1",
        "settlement",
        (),
        {"vendor_settlement", "vendor_settlements_due"},
    ),
    # A settlement's journal moved twice its amount (still balanced).
    "settlement journal doubled": (
        f"UPDATE ledger_entries SET amount = amount * 2 WHERE journal_id = {_SETTLED}",
        "settlement",
        (),
        {"vendor_settlement", "vendor_settlements_due"},
    ),
    # The refund's journal took twice its figures back (still balanced).
    "refund journal doubled": (
        f"UPDATE ledger_entries SET amount = amount * 2 WHERE journal_id = {_REFUND}",
        "refund",
        (),
        {"sponsorship_split_refund", "vendor_settlements_due", "sponsorship_fees"},
    ),
    # The sponsorship forgets what its refund returned of the part.
    "refunded part on the row": (
        "UPDATE sponsorships SET split_refunded_paise = 0 WHERE id = $1",
        "sid",
        (),
        {"sponsorship_split_refund"},
    ),
}


async def test_the_world_is_clean_and_settled_once(scratch_engine: AsyncEngine) -> None:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    ids = await in_transaction(scratch_engine, lambda c: _world(c, cid))
    report = await verify_ledger(scratch_engine)
    assert report.ok, [str(f) for f in report.findings]
    async with scratch_engine.connect() as conn:
        vendor = await splits_repo.get(conn, cid)
        assert vendor is not None
        [row] = await splits_repo.settlements_of(conn, vendor.vendor_id)
    assert (row.settlement_id, row.status.value, row.amount_paise) == (
        ids["settlement"],
        "SUCCESS",
        70_000,
    )


@pytest.mark.parametrize("case", list(CASES))
async def test_each_split_check_catches_its_tamper(
    case: str, scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    ids = await in_transaction(scratch_engine, lambda c: _world(c, cid))
    clean = await verify_ledger(scratch_engine)
    assert clean.ok, [str(f) for f in clean.findings]
    statement, which, args, expected = CASES[case]
    await tamper(scratch_database_url, statement, str(ids[which]), *args, tables=_TABLES)
    report = await verify_ledger(
        scratch_engine, checks=[*invariants.CHECKS, *sponsorship_invariants.CHECKS]
    )
    assert {f.check for f in report.findings} == expected, report.findings


async def test_a_refund_whose_split_cashfree_echoes_otherwise_is_parked(
    scratch_engine: AsyncEngine,
) -> None:
    """Cashfree's answer to a split sponsorship's refund names another vendor share than we
    sent: nothing is posted, the refund is parked for a person (as an amount mismatch is)."""
    cid = f"c-{uuid.uuid4().hex[:8]}"

    async def world(conn: AsyncConnection) -> tuple[uuid.UUID, str]:
        vendor_id = await _vendor(conn, cid)
        sid = await _paid(conn, cid, vendor_id)
        s = await service.require(conn, sid)
        refund = await requesting.open_refund(
            conn,
            Settings(),
            Principal(sub="fin", role=Role.finance_admin, scopes=frozenset()),
            s.payment_id,
            RefundRequest(reason="test refund", amount_paise=30_000),
            uuid.uuid4().hex,
        )
        return refund.id, vendor_id

    refund_id, vendor_id = await in_transaction(scratch_engine, world)

    async def answer(conn: AsyncConnection, share: str) -> RefundStatus:
        refund = await refunds_repo.get(conn, refund_id, lock=True)
        assert refund is not None
        got = GatewayRefund.model_validate(
            {
                "refund_id": refund.refund_ref,
                "refund_amount": "317.70",
                "refund_status": "SUCCESS",
                "refund_splits": [{"vendor_id": vendor_id, "amount": share}],
            }
        )
        return await processing.apply_gateway(conn, refund, got, source="test")

    status = await in_transaction(scratch_engine, lambda c: answer(c, "317.70"))
    assert status == RefundStatus.CREATED
    async with scratch_engine.connect() as conn:
        parked = await refunds_repo.get(conn, refund_id)
    assert parked is not None and parked.review_reason is not None
    assert "splits" in parked.review_reason
    assert (await verify_ledger(scratch_engine)).ok


async def test_an_order_split_otherwise_than_ours_does_not_match(
    scratch_engine: AsyncEngine,
) -> None:
    """`order_matches` compares Cashfree's echo of the split with the payment's own: another
    vendor, another amount, a percentage, a split missing or one too many are all another
    order (the payment would go to REVIEW), and a purchase's order has none."""
    cid = f"c-{uuid.uuid4().hex[:8]}"

    async def world(conn: AsyncConnection) -> Any:
        vendor_id = await _vendor(conn, cid)
        sid = await _paid(conn, cid, vendor_id)
        s = await service.require(conn, sid)
        return await payments_repo.get(conn, s.payment_id), vendor_id

    payment, vendor_id = await in_transaction(scratch_engine, world)

    def order(splits: list[dict[str, Any]] | None) -> Order:
        return Order.model_validate(
            {
                "order_id": payment.order_id,
                "order_amount": "1059.00",
                "order_currency": "INR",
                "order_status": "PAID",
                "order_splits": splits,
            }
        )

    assert order_matches(order([{"vendor_id": vendor_id, "amount": 1000.0}]), payment)
    for other in (
        [{"vendor_id": "cdbc_someone_else", "amount": 1000.0}],
        [{"vendor_id": vendor_id, "amount": 999.99}],
        [{"vendor_id": vendor_id, "percentage": 94.43}],
        [],
        None,
        [{"vendor_id": vendor_id, "amount": 1000.0}, {"vendor_id": "x", "amount": 1.0}],
    ):
        assert not order_matches(order(other), payment), other


async def test_a_split_to_a_vendor_not_the_communitys_own_is_caught(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    """Everything written after a redirect agrees with it: a community's vendor row pointed
    at someone else's vendor at Cashfree (the id is derived from the community's, so any
    other is not ours to split to), or a sponsorship of one community split to another's
    vendor, is paid, funded and owed to that vendor consistently. Only the vendor's id
    against its community's can tell; `vendor_settlements_due` compares them."""
    cid, other = f"c-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"

    async def two(conn: AsyncConnection) -> str:
        await _vendor(conn, cid)
        return await _vendor(conn, other)

    others = await in_transaction(scratch_engine, two)
    # A sponsorship of `cid` whose order split its part to `other`'s vendor.
    await in_transaction(scratch_engine, lambda c: _paid(c, cid, others))
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert {f.check for f in report.findings} == {"vendor_settlements_due"}, report.findings

    # The community's own vendor row pointed at a vendor id we never derived, then a
    # sponsorship split to it as the application would.
    third = f"c-{uuid.uuid4().hex[:8]}"
    stolen = "cdbc_" + "ab" * 20
    await in_transaction(scratch_engine, lambda c: _vendor(c, third))
    await tamper(
        scratch_database_url,
        "UPDATE split_vendors SET vendor_id = $2 WHERE community_id = $1",
        third,
        stolen,
        tables=("split_vendors",),
    )
    await in_transaction(scratch_engine, lambda c: _paid(c, third, stolen))
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    named = {f.subject for f in report.findings}
    assert f"community {third}" in named, report.findings
