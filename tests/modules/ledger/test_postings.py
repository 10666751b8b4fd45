"""The postings catalogue: each posting's exact legs, keys, kinds and texts, and balance."""

from __future__ import annotations

import ast
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commdesk_billing.errors import LedgerInvariantError
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.model import House, Journal, Ledger, Leg

AT = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
W = uuid.UUID(int=0xA1)  # wallet
AV = uuid.UUID(int=0xA2)  # its available account
HE = uuid.UUID(int=0xA3)  # its held account
PAY = uuid.UUID("11111111-2222-3333-4444-555555555555")
REF = uuid.UUID("66666666-7777-8888-9999-000000000000")
C, INR = Ledger.CREDITS, Ledger.INR

# The house accounts' ids are frozen by migration 0001; pin the ones postings use.
PINNED = {
    "credits:issuance:purchase": House.ISSUANCE["purchase"],
    "credits:issuance:bonus": House.ISSUANCE["bonus"],
    "credits:issuance:promotional": House.ISSUANCE["promotional"],
    "credits:issuance:refund_reversal": House.ISSUANCE["refund_reversal"],
    "credits:consumed:platform": House.CONSUMED_PLATFORM,
    "inr:gateway_clearing": House.GATEWAY_CLEARING,
    "inr:deferred_revenue": House.DEFERRED_REVENUE,
    "inr:gst_payable": House.GST_PAYABLE,
    "inr:refunds_payable": House.REFUNDS_PAYABLE,
    "inr:platform_revenue": House.PLATFORM_REVENUE,
    "inr:platform_fee_revenue": House.PLATFORM_FEE_REVENUE,  # migration 0007
    "inr:breakage_revenue": House.BREAKAGE_REVENUE,  # migration 0007
    "inr:subscription_revenue": House.SUBSCRIPTION_REVENUE,  # migration 0020
}


def _totals(journal: Journal) -> dict[Ledger, int]:
    totals: dict[Ledger, int] = defaultdict(int)
    for leg in journal.legs:
        totals[leg.ledger] += leg.amount
    return dict(totals)


def _balances(journal: Journal) -> None:
    assert all(v == 0 for v in _totals(journal).values()), journal
    assert len(journal.legs) >= 2


def test_house_accounts_are_their_codes() -> None:
    ns = uuid.UUID("6f1d4a8e-3c1b-5e0a-9b7c-2d4e6f8a0b1c")
    for code, account in PINNED.items():
        assert account == uuid.uuid5(ns, code), code


def test_wallet_key() -> None:
    assert postings.wallet_key("op-1") == "wallet:op-1"


@pytest.mark.parametrize("source", ["purchase", "bonus", "promotional", "refund_reversal"])
def test_credit_grant(source: str) -> None:
    j = postings.credit_grant(
        operation_key="k1",
        source=source,
        wallet_id=W,
        available_account_id=AV,
        credits=250,
        at=AT,
        reason="purchase pack",
    )
    assert (j.idempotency_key, j.kind, j.description) == (
        "wallet:k1",
        f"grant.{source}",
        "purchase pack",
    )
    assert j.legs == (Leg(House.ISSUANCE[source], C, 250), Leg(AV, C, -250, W))
    assert j.metadata == {} and j.created_at == AT
    _balances(j)


def test_credit_grant_unknown_source_is_refused() -> None:
    with pytest.raises(KeyError):
        postings.credit_grant(
            operation_key="k",
            source="gift",
            wallet_id=W,
            available_account_id=AV,
            credits=1,
            at=AT,
            reason="r",
        )


def test_platform_debit() -> None:
    j = postings.platform_debit(
        operation_key="d1", wallet_id=W, available_account_id=AV, credits=7, at=AT, reason="sms"
    )
    assert (j.idempotency_key, j.kind, j.description, j.metadata) == (
        "wallet:d1",
        "debit",
        "sms",
        {},
    )
    assert j.legs == (Leg(AV, C, 7, W), Leg(House.CONSUMED_PLATFORM, C, -7))
    _balances(j)


def test_a_platform_debit_recognizes_the_basis_it_drew_in_the_same_journal() -> None:
    j = postings.platform_debit(
        operation_key="d2",
        wallet_id=W,
        available_account_id=AV,
        credits=100,
        at=AT,
        reason="sms",
        basis_paise=847,
    )
    assert j.legs == (
        Leg(AV, C, 100, W),
        Leg(House.CONSUMED_PLATFORM, C, -100),
        Leg(House.DEFERRED_REVENUE, INR, 847),
        Leg(House.PLATFORM_REVENUE, INR, -847),
    )
    _balances(j)


def test_a_captured_hold_recognizes_the_captured_basis() -> None:
    j = postings.hold_captured(
        operation_key="c3",
        wallet_id=W,
        available_account_id=AV,
        held_account_id=HE,
        held=40,
        captured=25,
        at=AT,
        reason="call ended",
        basis_paise=212,
    )
    assert j.legs[-2:] == (
        Leg(House.DEFERRED_REVENUE, INR, 212),
        Leg(House.PLATFORM_REVENUE, INR, -212),
    )
    _balances(j)


def test_a_refund_residual_settles_a_lot_either_way() -> None:
    def captured(residual: int) -> Journal:
        return postings.refund_hold_captured(
            operation_key="rf",
            refund_ref="rf_1",
            wallet_id=W,
            held_account_id=HE,
            returns=[("purchase", 10)],
            at=AT,
            reason="refund",
            residual_paise=residual,
        )

    assert captured(0).legs == (Leg(HE, C, 10, W), Leg(House.ISSUANCE["purchase"], C, -10))
    assert captured(2).legs[-2:] == (
        Leg(House.DEFERRED_REVENUE, INR, 2),
        Leg(House.PLATFORM_REVENUE, INR, -2),
    )
    # Took a paisa more than the lot had left: it comes back out of revenue.
    assert captured(-1).legs[-2:] == (
        Leg(House.DEFERRED_REVENUE, INR, -1),
        Leg(House.PLATFORM_REVENUE, INR, 1),
    )
    _balances(captured(-1))


def test_hold_placed() -> None:
    j = postings.hold_placed(
        operation_key="h1",
        wallet_id=W,
        available_account_id=AV,
        held_account_id=HE,
        credits=40,
        at=AT,
        reason="call",
    )
    assert (j.idempotency_key, j.kind, j.description, j.metadata) == (
        "wallet:h1",
        "hold",
        "call",
        {},
    )
    assert j.legs == (Leg(AV, C, 40, W), Leg(HE, C, -40, W))
    _balances(j)


def test_hold_captured_in_part_releases_the_rest() -> None:
    j = postings.hold_captured(
        operation_key="c1",
        wallet_id=W,
        available_account_id=AV,
        held_account_id=HE,
        held=40,
        captured=25,
        at=AT,
        reason="call ended",
    )
    assert (j.idempotency_key, j.kind, j.description, j.metadata) == (
        "wallet:c1",
        "hold.capture",
        "call ended",
        {},
    )
    assert j.legs == (
        Leg(HE, C, 40, W),
        Leg(House.CONSUMED_PLATFORM, C, -25),
        Leg(AV, C, -15, W),
    )
    _balances(j)


def test_hold_captured_in_full_has_no_release_leg() -> None:
    j = postings.hold_captured(
        operation_key="c2",
        wallet_id=W,
        available_account_id=AV,
        held_account_id=HE,
        held=40,
        captured=40,
        at=AT,
        reason="r",
    )
    assert j.legs == (Leg(HE, C, 40, W), Leg(House.CONSUMED_PLATFORM, C, -40))
    _balances(j)


@pytest.mark.parametrize(("expired", "kind"), [(False, "hold.released"), (True, "hold.expired")])
def test_hold_released(expired: bool, kind: str) -> None:
    j = postings.hold_released(
        operation_key="r1",
        wallet_id=W,
        available_account_id=AV,
        held_account_id=HE,
        credits=40,
        at=AT,
        reason="void",
        expired=expired,
    )
    assert (j.idempotency_key, j.kind, j.description, j.metadata) == ("wallet:r1", kind, "void", {})
    assert j.legs == (Leg(HE, C, 40, W), Leg(AV, C, -40, W))
    _balances(j)


def test_hold_released_defaults_to_released() -> None:
    j = postings.hold_released(
        operation_key="r",
        wallet_id=W,
        available_account_id=AV,
        held_account_id=HE,
        credits=1,
        at=AT,
        reason="x",
    )
    assert j.kind == "hold.released"


def test_refund_hold_placed() -> None:
    j = postings.refund_hold_placed(
        operation_key="refund:x:hold",
        refund_ref="rf_1",
        wallet_id=W,
        available_account_id=AV,
        held_account_id=HE,
        credits=120,
        at=AT,
        reason="refund of order o1",
    )
    assert (j.idempotency_key, j.kind, j.description, j.metadata) == (
        "wallet:refund:x:hold",
        "refund.hold",
        "refund of order o1",
        {"refund": "rf_1"},
    )
    assert j.legs == (Leg(AV, C, 120, W), Leg(HE, C, -120, W))
    _balances(j)


def test_refund_hold_captured_one_leg_per_lot_in_order() -> None:
    j = postings.refund_hold_captured(
        operation_key="refund:x:capture",
        refund_ref="rf_1",
        wallet_id=W,
        held_account_id=HE,
        returns=[("purchase", 100), ("bonus", 20)],
        at=AT,
        reason="refund of order o1",
    )
    assert (j.idempotency_key, j.kind, j.description, j.metadata) == (
        "wallet:refund:x:capture",
        "refund.credits",
        "refund of order o1",
        {"refund": "rf_1"},
    )
    assert j.legs == (
        Leg(HE, C, 120, W),
        Leg(House.ISSUANCE["purchase"], C, -100),
        Leg(House.ISSUANCE["bonus"], C, -20),
    )
    _balances(j)


def test_refund_hold_released() -> None:
    j = postings.refund_hold_released(
        operation_key="refund:x:release",
        refund_ref="rf_1",
        wallet_id=W,
        available_account_id=AV,
        held_account_id=HE,
        credits=120,
        at=AT,
        reason="refund failed",
    )
    assert (j.idempotency_key, j.kind, j.description, j.metadata) == (
        "wallet:refund:x:release",
        "refund.release",
        "refund failed",
        {"refund": "rf_1"},
    )
    assert j.legs == (Leg(HE, C, 120, W), Leg(AV, C, -120, W))
    _balances(j)


def test_payment_captured() -> None:
    j = postings.payment_captured(payment_id=PAY, amount=11800, taxable=10000, gst=1800, at=AT)
    assert j.idempotency_key == f"payment:{PAY}:inr"
    assert j.kind == "payment.captured"
    assert j.description == f"payment {PAY} captured"
    assert j.metadata == {"payment_id": str(PAY)}
    assert j.legs == (
        Leg(House.GATEWAY_CLEARING, INR, 11800),
        Leg(House.DEFERRED_REVENUE, INR, -10000),
        Leg(House.GST_PAYABLE, INR, -1800),
    )
    assert all(leg.wallet_id is None for leg in j.legs)
    _balances(j)


def test_payment_captured_without_gst_has_no_gst_leg() -> None:
    j = postings.payment_captured(payment_id=PAY, amount=500, taxable=500, gst=0, at=AT)
    assert j.legs == (Leg(House.GATEWAY_CLEARING, INR, 500), Leg(House.DEFERRED_REVENUE, INR, -500))


def test_subscription_paid() -> None:
    sid = uuid.UUID(int=0x5B)
    j = postings.subscription_paid(
        payment_id=PAY,
        subscription_id=sid,
        period_number=2,
        amount=29900,
        taxable=25339,
        gst=4561,
        at=AT,
    )
    assert j.idempotency_key == f"payment:{PAY}:inr"
    assert j.kind == "subscription.paid"
    assert j.description == f"subscription {sid} period 2 paid"
    assert j.metadata == {"payment_id": str(PAY), "subscription_id": str(sid), "period": 2}
    assert j.legs == (
        Leg(House.GATEWAY_CLEARING, INR, 29900),
        Leg(House.SUBSCRIPTION_REVENUE, INR, -25339),
        Leg(House.GST_PAYABLE, INR, -4561),
    )
    _balances(j)
    untaxed = postings.subscription_paid(
        payment_id=PAY,
        subscription_id=sid,
        period_number=1,
        amount=500,
        taxable=500,
        gst=0,
        at=AT,
    )
    assert untaxed.legs == (
        Leg(House.GATEWAY_CLEARING, INR, 500),
        Leg(House.SUBSCRIPTION_REVENUE, INR, -500),
    )


def test_subscription_refund_owed() -> None:
    sid = uuid.UUID(int=0x5B)
    j = postings.subscription_refund_owed(
        refund_id=REF,
        refund_ref="rf_1",
        payment_id=PAY,
        subscription_id=sid,
        period_number=3,
        amount=10000,
        taxable=8475,
        tax=1525,
        at=AT,
    )
    assert j.idempotency_key == f"refund:{REF}:inr"
    assert j.kind == "subscription.refund_owed"
    assert j.description == f"refund rf_1 of subscription {sid} period 3"
    assert j.metadata == {
        "refund_id": str(REF),
        "payment_id": str(PAY),
        "subscription_id": str(sid),
        "period": 3,
    }
    assert j.legs == (
        Leg(House.REFUNDS_PAYABLE, INR, -10000),
        Leg(House.SUBSCRIPTION_REVENUE, INR, 8475),
        Leg(House.GST_PAYABLE, INR, 1525),
    )
    _balances(j)
    untaxed = postings.subscription_refund_owed(
        refund_id=REF,
        refund_ref="rf_1",
        payment_id=PAY,
        subscription_id=sid,
        period_number=1,
        amount=300,
        taxable=300,
        tax=0,
        at=AT,
    )
    assert untaxed.legs == (
        Leg(House.REFUNDS_PAYABLE, INR, -300),
        Leg(House.SUBSCRIPTION_REVENUE, INR, 300),
    )


def test_refund_owed() -> None:
    j = postings.refund_owed(
        refund_id=REF,
        refund_ref="rf_1",
        payment_id=PAY,
        order_id="o1",
        amount=5900,
        taxable=5000,
        tax=900,
        at=AT,
    )
    assert j.idempotency_key == f"refund:{REF}:inr"
    assert j.kind == "refund.owed"
    assert j.description == "refund rf_1 of order o1"
    assert list(j.metadata.items()) == [("refund_id", str(REF)), ("payment_id", str(PAY))]
    assert j.legs == (
        Leg(House.REFUNDS_PAYABLE, INR, -5900),
        Leg(House.DEFERRED_REVENUE, INR, 5000),
        Leg(House.GST_PAYABLE, INR, 900),
    )
    _balances(j)


def test_refund_owed_without_tax_has_no_gst_leg() -> None:
    j = postings.refund_owed(
        refund_id=REF,
        refund_ref="rf_1",
        payment_id=PAY,
        order_id="o1",
        amount=300,
        taxable=300,
        tax=0,
        at=AT,
    )
    assert j.legs == (Leg(House.REFUNDS_PAYABLE, INR, -300), Leg(House.DEFERRED_REVENUE, INR, 300))


def test_refund_paid() -> None:
    j = postings.refund_paid(refund_id=REF, refund_ref="rf_1", payment_id=PAY, amount=5900, at=AT)
    assert j.idempotency_key == f"refund:{REF}:paid"
    assert j.kind == "refund.paid"
    assert j.description == "refund rf_1 paid out by Cashfree"
    assert list(j.metadata.items()) == [("refund_id", str(REF)), ("payment_id", str(PAY))]
    assert j.legs == (
        Leg(House.REFUNDS_PAYABLE, INR, 5900),
        Leg(House.GATEWAY_CLEARING, INR, -5900),
    )
    _balances(j)


def test_each_journal_gets_its_own_id() -> None:
    def make() -> Journal:
        return postings.refund_paid(refund_id=REF, refund_ref="rf", payment_id=PAY, amount=1, at=AT)

    assert make().id != make().id


def test_zero_amounts_are_refused() -> None:
    with pytest.raises(LedgerInvariantError):
        postings.platform_debit(
            operation_key="d", wallet_id=W, available_account_id=AV, credits=0, at=AT, reason="r"
        )


# --- every posting balances, whatever the amounts ---------------------------------------

credits = st.integers(min_value=1, max_value=10**13)
sources = st.sampled_from(["purchase", "bonus", "promotional", "refund_reversal"])
keys = st.text(min_size=1, max_size=40)


@st.composite
def _any_posting(draw: st.DrawFn) -> Journal:
    k, n, reason = draw(keys), draw(credits), "r"
    held = draw(credits)
    captured = draw(st.integers(min_value=1, max_value=held))
    amount = draw(st.integers(min_value=1, max_value=10**12))
    taxable = draw(st.integers(min_value=0, max_value=amount))
    source, expired = draw(sources), draw(st.booleans())
    returns = draw(st.lists(st.tuples(sources, credits), min_size=1, max_size=4))
    wallet = {"wallet_id": W, "available_account_id": AV, "held_account_id": HE}
    makers: list[Callable[[], Journal]] = [
        lambda: postings.credit_grant(
            operation_key=k,
            source=source,
            wallet_id=W,
            available_account_id=AV,
            credits=n,
            at=AT,
            reason=reason,
        ),
        lambda: postings.platform_debit(
            operation_key=k,
            wallet_id=W,
            available_account_id=AV,
            credits=n,
            at=AT,
            reason=reason,
        ),
        lambda: postings.hold_placed(operation_key=k, **wallet, credits=n, at=AT, reason=reason),
        lambda: postings.hold_captured(
            operation_key=k, **wallet, held=held, captured=captured, at=AT, reason=reason
        ),
        lambda: postings.hold_released(
            operation_key=k, **wallet, credits=n, at=AT, reason=reason, expired=expired
        ),
        lambda: postings.refund_hold_placed(
            operation_key=k, refund_ref="rf", **wallet, credits=n, at=AT, reason=reason
        ),
        lambda: postings.refund_hold_captured(
            operation_key=k,
            refund_ref="rf",
            wallet_id=W,
            held_account_id=HE,
            returns=returns,
            at=AT,
            reason=reason,
        ),
        lambda: postings.refund_hold_released(
            operation_key=k, refund_ref="rf", **wallet, credits=n, at=AT, reason=reason
        ),
        lambda: postings.payment_captured(
            payment_id=PAY, amount=amount, taxable=taxable, gst=amount - taxable, at=AT
        ),
        lambda: postings.refund_owed(
            refund_id=REF,
            refund_ref="rf",
            payment_id=PAY,
            order_id="o",
            amount=amount,
            taxable=taxable,
            tax=amount - taxable,
            at=AT,
        ),
        lambda: postings.refund_paid(
            refund_id=REF, refund_ref="rf", payment_id=PAY, amount=amount, at=AT
        ),
        lambda: postings.subscription_refund_owed(
            refund_id=REF,
            refund_ref="rf",
            payment_id=PAY,
            subscription_id=W,
            period_number=1,
            amount=amount,
            taxable=taxable,
            tax=amount - taxable,
            at=AT,
        ),
    ]
    return draw(st.sampled_from(makers))()


@given(_any_posting())
def test_every_posting_balances_per_ledger(journal: Journal) -> None:
    _balances(journal)
    assert len({leg.ledger for leg in journal.legs}) == 1
    assert all(isinstance(leg.amount, int) and leg.amount != 0 for leg in journal.legs)
    # Wallet legs carry their wallet (they join its hash chain); house legs never do.
    for leg in journal.legs:
        assert (leg.wallet_id == W) == (leg.account_id in (AV, HE))


@given(held=credits, data=st.data())
def test_hold_capture_moves_exactly_what_was_held(held: int, data: st.DataObject) -> None:
    captured = data.draw(st.integers(min_value=1, max_value=held))
    j = postings.hold_captured(
        operation_key="c",
        wallet_id=W,
        available_account_id=AV,
        held_account_id=HE,
        held=held,
        captured=captured,
        at=AT,
        reason="r",
    )
    by_account = {leg.account_id: leg.amount for leg in j.legs}
    assert by_account[HE] == held
    assert by_account[House.CONSUMED_PLATFORM] == -captured
    assert by_account.get(AV, 0) == -(held - captured)
    _balances(j)


def test_postings_imports_only_the_ledger_model_and_the_standard_library() -> None:
    tree = ast.parse(Path(postings.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    foreign = {
        m
        for m in imported
        if m != "commdesk_billing.modules.ledger.model"
        and m.split(".")[0] not in sys.stdlib_module_names
    }
    assert foreign == set()


def test_a_vendor_settlement_and_its_reversal_are_exact_opposites() -> None:
    ids = {"settlement_id": "49703", "vendor_id": "cdbc_v", "community_id": "chess"}
    settled = postings.vendor_settled(amount=60_000, at=AT, **ids)
    reversed_ = postings.vendor_settlement_reversed(amount=60_000, at=AT, **ids)
    assert (settled.idempotency_key, settled.kind) == (
        "vendor-settlement:49703:settled",
        "split.vendor_settled",
    )
    assert (reversed_.idempotency_key, reversed_.kind) == (
        "vendor-settlement:49703:reversed",
        "split.vendor_settlement_reversed",
    )
    assert [(leg.account_id, leg.amount) for leg in settled.legs] == [
        (House.VENDOR_SETTLEMENTS_DUE, 60_000),
        (House.GATEWAY_CLEARING, -60_000),
    ]
    assert [(leg.account_id, leg.amount) for leg in reversed_.legs] == [
        (House.GATEWAY_CLEARING, 60_000),
        (House.VENDOR_SETTLEMENTS_DUE, -60_000),
    ]
    assert settled.id != reversed_.id and settled.metadata == reversed_.metadata == {
        "settlement_id": "49703",
        "vendor_id": "cdbc_v",
        "community_id": "chess",
    }
