"""Review of the payees slice: each test states what the module should do and fails on
c396804, demonstrating one finding of the review (see the report for severity)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.payees import invariants, service, targets, verification
from commdesk_billing.modules.payees.model import PayoutMethod
from tests.harness.databases import tamper
from tests.harness.mongo import MongoTarget, communities
from tests.modules.payees.conftest import PayeeApp, World, new_community
from tests.modules.payees.helpers import (
    NAME_MATCH_ACCOUNT,
    change_account,
    fresh_account,
    payable_payee,
)
from tests.modules.payees.test_accounts import api_beneficiary, put
from tests.modules.payees.test_api import bank, new_payee


class Boom(Exception):
    """Stands for anything between the Cashfree calls and the commit (a crash, a failed
    audit insert, a lost connection with no retry)."""


async def cashfree_holds(world: World, beneficiary_id: str) -> bool:
    try:
        await api_beneficiary(world, beneficiary_id)
    except (AssertionError, httpx.HTTPStatusError, KeyError):
        return False
    return True


# --- F1: an uncommitted change removes the CURRENT account's beneficiary at Cashfree -----


async def test_a_change_that_never_commits_leaves_the_current_beneficiary_at_cashfree(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine, payee_app: PayeeApp
) -> None:
    payee_id = uuid.UUID(await new_payee(api, world))
    account = fresh_account()
    first = await put(api, world, str(payee_id), bank(account))
    assert first.json()["payable_now"], first.text
    current_bene = verification.beneficiary_id_for(payee_id, 1)
    assert await cashfree_holds(world, current_bene)

    # The same account, the holder's name written out in full: a new version. Cashfree holds
    # one beneficiary per account, so `register` deletes version 1's (still current) before
    # adding version 2's; then the transaction dies before its commit.
    async def change_then_die(conn: AsyncConnection) -> None:
        await service.change_account(
            conn,
            client=payee_app.cashfree,
            ring=payee_app.ring,
            policy=service.Policy(timedelta(hours=72), "GOOD_PARTIAL_MATCH"),
            payee_id=payee_id,
            req=service.AccountRequest(
                PayoutMethod.bank, "Priya Kumari Sharma", number=account[0], ifsc=account[1]
            ),
            by="tests",
        )
        raise Boom

    with pytest.raises(Boom):
        await in_transaction(engine, change_then_die)

    # The database still pays version 1, at once, to its beneficiary...
    async def target(conn: AsyncConnection) -> Any:
        return await targets.lock_target(conn, payee_id, datetime.now(UTC))

    t = await in_transaction(engine, target)
    assert t is not None and t.beneficiary_id == current_bene
    # ...which must still exist at Cashfree (fails: it was deleted by the rolled-back attempt).
    assert await cashfree_holds(world, current_bene), "settlements would pay a deleted beneficiary"


async def test_putting_the_current_account_again_repairs_a_missing_beneficiary(
    api: httpx.AsyncClient, world: World, payee_app: PayeeApp
) -> None:
    payee_id = await new_payee(api, world)
    body = bank()
    assert (await put(api, world, payee_id, body)).status_code == 200
    bene = verification.beneficiary_id_for(uuid.UUID(payee_id), 1)
    await payee_app.cashfree.remove_beneficiary(bene)  # as F1 (or ops) leaves it
    again = await put(api, world, payee_id, body)
    assert again.status_code == 200, again.text
    # Fails: `_same` answers version 1 as it is ("payable_now": true) without asking Cashfree.
    assert await cashfree_holds(world, bene) or not again.json()["payable_now"]


# --- F2: a failed attempt squats an account; its answer names the account's holder -------


async def test_a_failed_attempt_by_another_payee_does_not_block_the_real_holder(
    api: httpx.AsyncClient, world: World, payee_app: PayeeApp, mongodb: MongoTarget, engine: Any
) -> None:
    squatter = World(payee_app.settings, await new_community(mongodb, "sq-1"), "sq-1")
    squat_payee = await new_payee(api, squatter)
    victim_payee = await new_payee(api, world)
    try:
        # Someone else's account number, a wrong name: NO_MATCH, stored failed and current.
        squat = await put(api, squatter, squat_payee, bank(NAME_MATCH_ACCOUNT, "Rahul Verma"))
        assert squat.json()["verification"]["status"] == "failed", squat.text
        # The holder, with the right name, is refused (fails: 409 payout_account_in_use).
        real = await put(api, world, victim_payee, bank(NAME_MATCH_ACCOUNT, "Priya Sharma"))
        assert real.status_code == 200, real.text
    finally:
        for p in (squat_payee, victim_payee):
            await change_account(engine, payee_app.cashfree, payee_app.ring, uuid.UUID(p))


async def test_a_failed_name_match_does_not_reveal_the_name_at_the_bank(
    api: httpx.AsyncClient, world: World, payee_app: PayeeApp, engine: Any
) -> None:
    payee_id = await new_payee(api, world)
    try:
        r = await put(api, world, payee_id, bank(NAME_MATCH_ACCOUNT, "Rahul Verma"))
        assert r.json()["verification"]["status"] == "failed", r.text
        # Fails: any community owner learns whose account a number is (name_at_bank).
        assert "PRIYA SHARMA" not in r.text.upper()
    finally:
        await change_account(engine, payee_app.cashfree, payee_app.ring, uuid.UUID(payee_id))


# --- F3: one bank account is a number AND an IFSC ----------------------------------------


async def test_the_same_number_at_another_bank_is_another_account(
    api: httpx.AsyncClient, world: World, payee_app: PayeeApp, mongodb: MongoTarget
) -> None:
    number, _ = fresh_account()
    first = await new_payee(api, world)
    assert (await put(api, world, first, bank((number, "UTIB0000123")))).json()["payable_now"]
    other = World(payee_app.settings, await new_community(mongodb, "o-3"), "o-3")
    second = await new_payee(api, other)
    r = await put(api, other, second, bank((number, "HDFC0000999")))
    assert r.status_code == 200, r.text  # fails: 409 payout_account_in_use


# --- F4: a VPA the schema accepts is a 500 ----------------------------------------------


async def test_a_long_vpa_the_schema_accepts_is_never_a_500(
    api: httpx.AsyncClient, world: World
) -> None:
    payee_id = await new_payee(api, world)
    vpa = "p" * 50 + "@" + "b" * 40  # 91 characters: VpaPattern and max_length=100 allow it
    r = await put(
        api, world, payee_id, {"method": "upi", "account_holder": "Priya Sharma", "vpa": vpa}
    )
    assert r.status_code < 500, r.text  # fails: account_mask > 64 violates the CHECK


# --- F5: a community's ObjectId in upper case is a second payee --------------------------


async def test_one_community_is_one_payee_whatever_the_case_of_its_object_id(
    api: httpx.AsyncClient, world: World, mongodb: MongoTarget
) -> None:
    oid = ObjectId()
    async with communities(mongodb) as collection:
        await collection.insert_one(
            {"_id": oid, "name": "Chess Club", "owner_ids": [world.owner], "status": "active"}
        )
    made = []
    for subject in (str(oid), str(oid).upper()):
        r = await api.post(
            "/v1/payees",
            json={"kind": "community", "subject_id": subject, "display_name": "Chess"},
            headers=world.headers("owner_record"),
        )
        made.append((r.status_code, r.json().get("payable_account")))
    # Fails: (201, community:<hex>:payable), (201, community:<HEX>:payable) — two payees,
    # the second's payable an account no spend ever credits.
    assert made[1][0] == 409, made


# --- F6: the verify check misses the tampers that redirect or speed up a payout ----------

_V2 = "WHERE payee_id = $1 AND version = 2"
MISSED = {
    "cooling-off cut short": "UPDATE payout_accounts SET payouts_blocked_until = created_at " + _V2,
    "beneficiary swapped": "UPDATE payout_accounts SET beneficiary_id = 'someoneelse1' " + _V2,
}


@pytest.mark.parametrize("case", list(MISSED))
async def test_verify_catches_a_redirected_or_hurried_payout_account(
    case: str, scratch_database_url: str, scratch_engine: AsyncEngine, payee_app: PayeeApp
) -> None:
    cf, ring = payee_app.cashfree, payee_app.ring
    payee, _ = await payable_payee(scratch_engine, cf, ring)
    await change_account(scratch_engine, cf, ring, payee.id, cooling_off=timedelta(hours=72))
    clean = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert clean.ok, [str(f) for f in clean.findings]
    await tamper(scratch_database_url, MISSED[case], payee.id, tables=("payout_accounts",))
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert not report.ok, f"{case}: not found by payout_accounts"  # fails


async def test_the_app_role_cannot_rewrite_where_or_when_an_account_is_paid(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = await new_payee(api, world)
    await put(api, world, payee_id, bank())
    await put(api, world, payee_id, bank())  # version 2, in cooling-off

    async def rewrite(conn: AsyncConnection) -> None:
        await conn.execute(
            text(
                "UPDATE payout_accounts SET payouts_blocked_until = created_at, "
                "beneficiary_id = 'elsewhere1' WHERE payee_id = :p AND version = 2"
            ),
            {"p": uuid.UUID(payee_id)},
        )

    # Fails: the trigger lets the application's own role do it (nothing in the code needs to).
    with pytest.raises(Exception, match=r"never changed|identity"):
        await in_transaction(engine, rewrite)
