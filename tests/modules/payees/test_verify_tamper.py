"""The payees' check of `ledger verify`, shown failing on each deliberate tamper.

Two payees are made by the service itself (verified at the Payouts sandbox, one with a
changed account) in a scratch database; the books are clean; then one record is changed
behind the application's back, as only a superuser could, and the check names it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.payees import invariants, service
from commdesk_billing.modules.payees.model import PayoutMethod
from tests.harness.databases import tamper
from tests.modules.payees.conftest import PayeeApp
from tests.modules.payees.helpers import fresh_account, payable_payee

_V = "WHERE payee_id = $1 AND version = {v}"
CASES = {
    "verified without a beneficiary": (
        f"UPDATE payout_accounts SET beneficiary_id = NULL {_V.format(v=2)}",
        {"payout_account_verified"},
    ),
    "verified bank account without a name match": (
        f"UPDATE payout_accounts SET name_match_result = NULL {_V.format(v=1)}",
        {"payout_account_verified"},
    ),
    "no current version": (
        f"UPDATE payout_accounts SET superseded_at = now() {_V.format(v=2)}",
        {"payout_account_versions"},
    ),
    # Renumbered, version "3" also names a beneficiary (`…v2`) no version 3 or earlier of
    # that account derives: two true findings.
    "a version missing": (
        f"UPDATE payout_accounts SET version = 3 {_V.format(v=2)}",
        {"payout_account_versions", "payout_account_beneficiary"},
    ),
    "superseded after its successor was made": (
        "UPDATE payout_accounts SET superseded_at = superseded_at + interval '1 hour' "
        + _V.format(v=1),
        {"payout_account_superseded"},
    ),
    "blocked before it was made": (
        "UPDATE payout_accounts SET payouts_blocked_until = created_at - interval '1 second' "
        + _V.format(v=2),
        {"payout_account_superseded"},
    ),
    "paid to another account's beneficiary": (
        "UPDATE payout_accounts SET beneficiary_id = (SELECT beneficiary_id FROM payout_accounts "
        "WHERE payee_id = $1 AND version = 1) " + _V.format(v=2),
        {"payout_account_beneficiary"},
    ),
    "a name match below its floor": (
        "UPDATE payout_accounts SET name_match_result = 'MODERATE_PARTIAL_MATCH' " + _V.format(v=1),
        {"payout_account_verified"},
    ),
    "no cooling-off after a verified account": (
        "UPDATE payout_accounts SET cooling_off_s = 0, payouts_blocked_until = created_at "
        + _V.format(v=2),
        {"payout_account_superseded"},
    ),
    "blocked short of its cooling-off": (
        "UPDATE payout_accounts SET payouts_blocked_until = payouts_blocked_until "
        "- interval '1 second' " + _V.format(v=2),
        {"payout_account_superseded"},
    ),
    "one account, two payees": (
        "UPDATE payout_accounts SET account_fingerprint = (SELECT account_fingerprint "
        "FROM payout_accounts WHERE payee_id = $2 AND superseded_at IS NULL) " + _V.format(v=2),
        {"payout_account_shared"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_payee_check_catches_its_tamper(
    case: str, scratch_database_url: str, scratch_engine: AsyncEngine, payee_app: PayeeApp
) -> None:
    cf, ring = payee_app.cashfree, payee_app.ring
    payee, _ = await payable_payee(scratch_engine, cf, ring)
    other, _ = await payable_payee(scratch_engine, cf, ring)
    number, ifsc = fresh_account()
    await in_transaction(
        scratch_engine,
        lambda conn: service.change_account(
            conn,
            client=cf,
            ring=ring,
            policy=service.Policy(timedelta(hours=1), "GOOD_PARTIAL_MATCH"),
            payee_id=payee.id,
            req=service.AccountRequest(PayoutMethod.bank, "Priya Sharma", number, ifsc),
            by="tests",
        ),
    )
    clean = await verify_ledger(scratch_engine)
    assert clean.ok, [str(f) for f in clean.findings]
    sql, expected = CASES[case]
    args = (payee.id, other.id) if "$2" in sql else (payee.id,)
    await tamper(scratch_database_url, sql, *args, tables=("payout_accounts",))
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert {f.check for f in report.findings} == expected, report.findings
