"""`ledger verify` as composed checks: each module owns its rules, the wiring lists them."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.modules.autorecharge import invariants as autorecharge
from commdesk_billing.modules.communities import invariants as communities
from commdesk_billing.modules.fraud import invariants as fraud
from commdesk_billing.modules.invoices import invariants as invoices
from commdesk_billing.modules.ledger import invariants as ledger
from commdesk_billing.modules.ledger.verify import Check, verify_ledger
from commdesk_billing.modules.partners import invariants as partners
from commdesk_billing.modules.payees import invariants as payees
from commdesk_billing.modules.refunds import invariants as refunds
from commdesk_billing.modules.settlements import invariants as settlements
from commdesk_billing.modules.splits import invariants as splits
from commdesk_billing.modules.sponsorships import invariants as sponsorships
from commdesk_billing.modules.subscriptions import invariants as subscriptions
from commdesk_billing.modules.usage import invariants as usage
from commdesk_billing.modules.wallet import invariants as wallet
from commdesk_billing.wiring import verify_checks as default_checks
from tests.conftest import new_wallet

# The checks each invariants module exports, in the order `ledger verify` reports them.
OWNED: list[tuple[ModuleType, tuple[Check, ...]]] = [
    (ledger, ledger.CHECKS),
    (wallet, wallet.CHECKS),
    (refunds, refunds.CHECKS),
    (communities, communities.CHECKS),
    (partners, partners.CHECKS),
    (payees, payees.CHECKS),
    (sponsorships, sponsorships.CHECKS),
    (settlements, settlements.CHECKS),
    (splits, splits.CHECKS),
    (usage, usage.CHECKS),
    (subscriptions, subscriptions.CHECKS),
    (autorecharge, autorecharge.CHECKS),
    (invoices, invoices.CHECKS),
    (fraud, fraud.CHECKS),
    (ledger, ledger.SEAL_CHECKS),
]


def test_default_checks_name_every_check_once_in_the_reporting_order() -> None:
    checks = default_checks()
    assert [c.name for c in checks] == [
        "journals",
        "wallet_chains",
        "wallet_balances",
        "statement_lines",
        "lot_movements",
        "lots_and_lines",
        "refund_reservations",
        "lot_basis",
        "refund_reversal",
        "refund_totals",
        "refund_lots",
        "refund_amounts",
        "refund_basis",
        "refund_subscription_periods",
        "community_spends",
        "community_payables",
        "partner_shares",
        "partner_payables",
        "payout_accounts",
        "sponsorship_funding",
        "sponsorship_releases",
        "sponsorship_escrow",
        "sponsorship_refunds",
        "sponsorship_split_refunds",
        "sponsorship_payables",
        "settlement_journals",
        "settlement_payables",
        "settlement_transfers",
        "settlement_targets",
        "vendor_settlements_due",
        "vendor_settlements",
        "usage_debits",
        "usage_aggregates",
        "usage_debts",
        "subscription_charges",
        "subscription_periods",
        "subscription_inr_payments",
        "subscription_plan_changes",
        "auto_recharge_pending",
        "document_figures",
        "document_numbers",
        "review_holds",
        "seals",
        "rollups",
    ]
    assert len({c.name for c in checks}) == len(checks)
    assert list(checks) == [c for _, exported in OWNED for c in exported]
    # Nothing a module defines is left out of what it exports.
    for module in {m for m, _ in OWNED}:
        defined = {v for v in vars(module).values() if isinstance(v, Check)}
        exported = {c for m, cs in OWNED if m is module for c in cs}
        assert defined == exported, module.__name__


def test_each_check_is_owned_by_the_module_it_lives_in() -> None:
    for module, exported in OWNED:
        assert module.__file__ is not None
        path = Path(module.__file__)
        assert path.name == "invariants.py" and path.parent.parent.name == "modules"
        for c in exported:
            assert c.owner == module.__name__, c.name
            assert inspect.getsourcefile(c.run) == module.__file__, c.name


@pytest.mark.usefixtures("verify_jobs")
async def test_verify_runs_only_the_given_checks_in_the_given_order(
    scratch_engine: AsyncEngine,
) -> None:
    w = await new_wallet(scratch_engine, 100)
    clean = await verify_ledger(scratch_engine)
    assert clean.ok, [str(f) for f in clean.findings]
    assert list(clean.stats) == [
        "journals",
        "entries",
        "wallets",
        "refunds",
        "sponsorships",
        "settlements",
        "split_vendors",
        "usage_events",
        "subscription_charges",
        "subscription_plan_changes",
        "documents",
        "seal_blocks",
        "unsealed_entries",
    ]

    # The row no longer matches its entries, lots or statement: only `wallet_balances` knows.
    async with scratch_engine.begin() as conn:
        await conn.execute(
            text("UPDATE wallets SET available_credits = available_credits + 1 WHERE id = :w"),
            {"w": w.id},
        )
    everything = await verify_ledger(scratch_engine)
    assert [f.check for f in everything.findings] == [
        "wallet_balance",
        "wallet_lots",
        "wallet_statement",
    ]

    alone = await verify_ledger(scratch_engine, checks=[ledger.wallet_balances])
    assert alone.findings == everything.findings
    assert alone.stats == {}

    chains = await verify_ledger(scratch_engine, checks=[ledger.wallet_chains])
    assert chains.ok and chains.stats == {"wallets": 1}

    reordered = await verify_ledger(scratch_engine, checks=[ledger.seals, ledger.journals])
    assert reordered.ok
    assert list(reordered.stats) == ["seal_blocks", "unsealed_entries", "journals", "entries"]
    assert reordered.stats["entries"] == clean.stats["entries"]

    nothing = await verify_ledger(scratch_engine, checks=[])
    assert nothing.ok and nothing.stats == {}
