"""The partner checks of `ledger verify`, each shown failing on a deliberate tamper.

A share is posted (and half of it taken back) by the service's own entry points, called as
`credit_payment` and `_settle` call them, in a scratch database; the books are clean; then
one record is changed behind the application's back, as only a superuser could, and the
named checks catch it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.accounts import open_partner_accounts
from commdesk_billing.modules.ledger.model import House, PartnerAccounts
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.partners import invariants, service
from commdesk_billing.modules.users import service as users
from tests.conftest import new_wallet
from tests.harness.databases import tamper

_TABLES = ("ledger_entries", "partner_shares", "partner_share_reversals")


@dataclass(frozen=True)
class Purchase:
    id: uuid.UUID
    user_id: uuid.UUID
    taxable_paise: int


async def _tamper(url: str, sql: str, *args: object) -> None:
    await tamper(url, sql, *args, tables=_TABLES)


_SHARE_JOURNAL = "(SELECT journal_id FROM partner_shares WHERE partner_id = $1)"
_REVERSAL_JOURNAL = (
    "(SELECT v.journal_id FROM partner_share_reversals v "
    "JOIN partner_shares s ON s.id = v.share_id WHERE s.partner_id = $1)"
)
_ALL = {"partner_share", "partner_payable", "partner_expense"}
CASES = {
    # The share's journal posts twice what its row says (still balanced).
    "share journal doubled": (
        f"UPDATE ledger_entries SET amount = amount * 2 WHERE journal_id = {_SHARE_JOURNAL}",
        lambda p, other: (),
        _ALL,
    ),
    # The share's payable leg credited to another partner: the expense is right, the two
    # partners' payables are not.
    "payable of another partner": (
        f"UPDATE ledger_entries SET account_id = $2 WHERE journal_id = {_SHARE_JOURNAL} "
        "AND account_id = $3",
        lambda p, other: (other.payable, p.payable),
        {"partner_share", "partner_payable"},
    ),
    # Money booked as partner expense with no share behind it (a purchase's clearing leg).
    "expense with no share": (
        "UPDATE ledger_entries SET account_id = $2 WHERE account_id = $3 AND $1 <> ''",
        lambda p, other: (House.PARTNER_EXPENSE, House.GATEWAY_CLEARING),
        {"partner_expense"},
    ),
    # The row claims a paisa more than its rate gives and than its journal moved.
    "share row": (
        "UPDATE partner_shares SET share_paise = share_paise + 1 WHERE partner_id = $1",
        lambda p, other: (),
        _ALL,
    ),
    # The reversal's journal took back twice what its row says.
    "reversal journal doubled": (
        f"UPDATE ledger_entries SET amount = amount * 2 WHERE journal_id = {_REVERSAL_JOURNAL}",
        lambda p, other: (),
        _ALL,
    ),
}


async def _share_and_half_back(
    conn: AsyncConnection, partner_id: str
) -> tuple[Purchase, uuid.UUID]:
    await service.create_partner(
        conn, partner_id=partner_id, name="T", share_bps=1000, reason="test", by="t"
    )
    user = f"u-{uuid.uuid4().hex}"
    await service.attribute(
        conn,
        partner_id=partner_id,
        user_external_id=user,
        valid_from=datetime.now(UTC) - timedelta(hours=1),
        valid_until=None,
        by="t",
    )
    purchase = Purchase(uuid.uuid4(), await users.ensure_user(conn, user), 25424)
    share = await service.on_purchase_credited(conn, purchase)
    assert share is not None and share.share_paise == 2542
    refund_id = uuid.uuid4()
    back = await service.on_refund_succeeded(conn, refund_id, purchase.id, 12712)
    assert back is not None and back.share_paise == 1271
    await open_partner_accounts(conn, f"{partner_id}-other")
    return purchase, refund_id


@pytest.mark.parametrize("case", list(CASES))
async def test_each_partner_check_catches_its_tamper(
    case: str, scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    partner_id = f"t-{uuid.uuid4().hex[:8]}"
    # Bought credits elsewhere: their money in gateway clearing, for the expense's tamper.
    await new_wallet(scratch_engine, 100)
    await in_transaction(scratch_engine, lambda c: _share_and_half_back(c, partner_id))
    clean = await verify_ledger(scratch_engine)
    assert clean.ok, [str(f) for f in clean.findings]
    sql, accounts, expected = CASES[case]
    args = accounts(PartnerAccounts.of(partner_id), PartnerAccounts.of(f"{partner_id}-other"))
    await _tamper(scratch_database_url, sql, partner_id, *args)
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert {f.check for f in report.findings} == expected, report.findings


async def test_repeats_post_nothing_twice(scratch_engine: AsyncEngine) -> None:
    partner_id = f"t-{uuid.uuid4().hex[:8]}"
    purchase, refund_id = await in_transaction(
        scratch_engine, lambda c: _share_and_half_back(c, partner_id)
    )

    async def again(conn: AsyncConnection) -> None:
        assert (await service.on_purchase_credited(conn, purchase)) is not None
        back = await service.on_refund_succeeded(conn, refund_id, purchase.id, 12712)
        assert back is not None and back.share_paise == 1271

    await in_transaction(scratch_engine, again)
    async with scratch_engine.connect() as conn:
        _partner, totals, _shares, _reversals = await service.earnings(conn, partner_id, limit=10)
    assert (totals.shares, totals.reversals, totals.payable_paise) == (1, 1, 2542 - 1271)
    assert (await verify_ledger(scratch_engine)).ok
