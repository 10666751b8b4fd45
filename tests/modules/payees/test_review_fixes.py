"""What the review's fixes promise beyond its own tests: one payee's account keeps one
beneficiary across versions, a beneficiary Cashfree holds for someone we do not know is a
409 that changes nothing, an account is its number at its bank (leading zeros aside), a VPA
is one account whatever its case and honestly verified by its beneficiary alone, the rows
are frozen for the application too, and Cashfree's odd text is stored safely."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from structlog.testing import capture_logs

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.payees import invariants, verification
from tests.modules.payees.conftest import PayeeApp, World, new_community
from tests.modules.payees.helpers import change_account, fresh_account
from tests.modules.payees.test_accounts import api_beneficiary, payable_ids, put, versions
from tests.modules.payees.test_api import bank, new_payee, problem


async def rows_of(engine: AsyncEngine, payee_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT version, beneficiary_id, verification_status, cooling_off_s "
                "FROM payout_accounts WHERE payee_id = :p ORDER BY version"
            ),
            {"p": uuid.UUID(payee_id)},
        )
        return [dict(r._mapping) for r in rows]


async def test_the_same_account_under_a_new_holder_keeps_its_beneficiary(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = await new_payee(api, world)
    account = fresh_account()
    assert (await put(api, world, payee_id, bank(account))).json()["payable_now"]
    renamed = await put(api, world, payee_id, bank(account, holder="Priya Kumari Sharma"))
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["version"] == 2 and renamed.json()["verification"]["status"] == (
        "verified"
    )
    first = verification.beneficiary_id_for(uuid.UUID(payee_id), 1)
    # Version 2 is paid to version 1's beneficiary (Cashfree holds one per account), which
    # was never deleted on the way; a change after a verified one waits its cooling-off.
    assert [
        (r["version"], r["beneficiary_id"], r["cooling_off_s"] > 0)
        for r in await rows_of(engine, payee_id)
    ] == [(1, first, False), (2, first, True)]
    held = await api_beneficiary(world, first)
    assert held["beneficiary_instrument_details"]["bank_account_number"] == account[0]
    # Away and back: the payee's own beneficiary of that account is still the one used.
    await put(api, world, payee_id, bank())
    back = await put(api, world, payee_id, bank(account))
    assert back.json()["version"] == 4 and back.json()["beneficiary_registered"], back.text
    assert (await rows_of(engine, payee_id))[3]["beneficiary_id"] == first
    report = await verify_ledger(engine, checks=list(invariants.CHECKS))
    assert report.ok, report.findings


async def test_a_beneficiary_we_never_recorded_is_a_409_that_changes_nothing(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine, payee_app: PayeeApp
) -> None:
    payee_id = await new_payee(api, world)
    assert (await put(api, world, payee_id, bank())).json()["payable_now"]
    number, ifsc = fresh_account()
    stranger = f"stranger{uuid.uuid4().hex[:8]}"
    await payee_app.cashfree.add_beneficiary(
        beneficiary_id=stranger, name="Someone Else", bank_account_number=number, bank_ifsc=ifsc
    )
    try:
        key = uuid.uuid4().hex
        refused = await put(api, world, payee_id, bank((number, ifsc)), key=key)
        body = problem(refused, 409, "payout_beneficiary_conflict")
        assert number not in refused.text and "retry" not in body.get("detail", "").lower()
        assert "retry-after" not in refused.headers
        # Nothing stored; the current account is paid as before; the stranger is untouched.
        assert [v for v, _, _ in await versions(engine, uuid.UUID(payee_id))] == [1]
        assert (await payable_ids(engine, datetime.now(UTC)))[uuid.UUID(payee_id)] == 1
        assert (await api_beneficiary(world, stranger))["beneficiary_id"] == stranger
        # The same key answers the same (a business answer, kept).
        again = await put(api, world, payee_id, bank((number, ifsc)), key=key)
        assert again.status_code == 409 and again.headers.get("idempotent-replayed") == "true"
    finally:
        await payee_app.cashfree.remove_beneficiary(stranger)


async def test_an_account_is_its_number_at_its_bank(
    api: httpx.AsyncClient, world: World, payee_app: PayeeApp, mongodb: Any, engine: Any
) -> None:
    number, _ = fresh_account()
    first = await new_payee(api, world)
    assert (await put(api, world, first, bank(("00" + number, "UTIB0000123")))).json()[
        "payable_now"
    ]
    other = World(payee_app.settings, await new_community(mongodb, "o-z"), "o-z")
    second = await new_payee(api, other)
    try:
        # The same number without its padding, at another branch of the same bank: the same
        # account (one payee's); at another bank: another account.
        for account in ((number, "UTIB0000123"), ("00" + number, "UTIB0009999")):
            problem(await put(api, other, second, bank(account)), 409, "payout_account_in_use")
        elsewhere = await put(api, other, second, bank((number, "KKBK0000123")))
        assert elsewhere.json()["verification"]["status"] == "verified", elsewhere.text
    finally:
        for p in (first, second):
            await change_account(engine, payee_app.cashfree, payee_app.ring, uuid.UUID(p))


async def test_a_vpa_is_one_account_whatever_its_case_and_is_never_logged(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    payee_id = await new_payee(api, world)
    handle = "Pr" + uuid.uuid4().hex[:8] + "x" * 40  # 50: the longest handle
    vpa = f"{handle}@{'B' * 30}"
    body = {"method": "upi", "account_holder": "Priya Sharma", "vpa": vpa}
    with capture_logs() as logs:
        first = await put(api, world, payee_id, body)
        again = await put(api, world, payee_id, {**body, "vpa": vpa.lower()})
    assert first.status_code == 200, first.text
    acct = first.json()
    assert acct["account_mask"] == "pr" + "X" * 8 + "@" + "b" * 30
    assert acct["verification"]["verified_by"] == "beneficiary"
    assert acct["verification"]["name_match_result"] is None
    assert again.json()["version"] == 1 and again.json() == acct  # the same VPA: nothing new
    for leak in (vpa, vpa.lower()):
        assert leak not in first.text and leak not in repr(logs) and leak not in caplog.text
    async with engine.connect() as conn:
        audit = (
            await conn.execute(
                text("SELECT coalesce(string_agg(t::text, ' '), '') FROM audit_logs t")
            )
        ).scalar_one()
    assert vpa.lower() not in audit


async def test_the_app_role_cannot_rewrite_a_payee_or_a_version(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = uuid.UUID(await new_payee(api, world))
    await put(api, world, str(payee_id), bank())
    await put(api, world, str(payee_id), bank())

    async def run(statement: str) -> None:
        async def go(conn: AsyncConnection) -> None:
            await conn.execute(text(statement), {"p": payee_id})

        await in_transaction(engine, go)

    refused = [
        "UPDATE payees SET subject_id = 'someone-else' WHERE id = :p",
        "UPDATE payees SET kind = 'partner' WHERE id = :p",
        "UPDATE payout_accounts SET verification_status = 'failed', verified_at = NULL, "
        "beneficiary_id = NULL WHERE payee_id = :p AND version = 2",
        "UPDATE payout_accounts SET cooling_off_s = 1, payouts_blocked_until = "
        "created_at + interval '1 second' WHERE payee_id = :p AND version = 2",
        "UPDATE payout_accounts SET superseded_at = NULL WHERE payee_id = :p AND version = 1",
        "UPDATE payout_accounts SET superseded_at = now() WHERE payee_id = :p AND version = 1",
        "UPDATE payout_accounts SET account_sealed = NULL WHERE payee_id = :p AND version = 1",
    ]
    for statement in refused:
        with pytest.raises(Exception, match=r"never changed|stays superseded|never removed"):
            await run(statement)
    # What may change: a payee's name and status; a version's sealed number, re-sealed.
    await run("UPDATE payees SET display_name = 'Renamed' WHERE id = :p")
    await run("UPDATE payout_accounts SET account_sealed = account_sealed WHERE payee_id = :p")


@pytest.mark.parametrize(
    ("reported", "stored"),
    [
        ("NaN", None),
        ("sNaN", None),
        ("Infinity", None),
        ("-1", None),
        ("100.001", None),
        ("99.999", Decimal("100.00")),
        ("90.00", Decimal("90.00")),
        ("x", None),
        ("", None),
    ],
)
def test_a_score_is_stored_only_when_it_is_one(reported: str, stored: Decimal | None) -> None:
    assert verification._score(reported) == stored


def test_cashfree_text_is_stored_safely() -> None:
    assert verification.clean("PRIYA\x00 SHARMA\n", 200) == "PRIYA SHARMA"
    assert verification.clean("A" * 5000, 200) == "A" * 200
    assert verification.clean("\x00\x01", 200) is None
    assert verification.clean(None, 10) is None
