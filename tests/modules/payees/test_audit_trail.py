"""A payout account change is audited with what was paid to and what will be (masked), where
the change came from, in the change's own transaction; suspending says the status it left."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.modules.payees.conftest import World
from tests.modules.payees.helpers import fresh_account
from tests.modules.payees.test_api import bank, new_payee


async def _trail(engine: AsyncEngine, payee_id: str, action: str) -> list[object]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT actor_role, request_id, host(ip) AS ip, user_agent, before, after"
                " FROM audit_logs WHERE target_id = :p AND action = :a ORDER BY created_at, id"
            ),
            {"p": payee_id, "a": action},
        )
        return list(rows)


async def test_an_account_change_records_the_old_and_the_new_account(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = await new_payee(api, world, "owner_record")
    first, second = fresh_account(), fresh_account()
    for n, account in enumerate((first, second)):
        r = await api.put(
            f"/v1/payees/{payee_id}/payout-account",
            json=bank(account),
            headers={
                **world.headers("finance_admin"),
                "X-Request-Id": f"chg-{n}",
                "User-Agent": "finance-console/3",
            },
        )
        assert r.status_code == 200, r.text
    one, two = await _trail(engine, payee_id, "payee.payout_account.changed")
    mask = ["X" * 10 + first[0][-4:], "X" * 10 + second[0][-4:]]
    assert one.before is None  # a first account replaces nothing
    assert (one.after["version"], one.after["account"]) == (1, mask[0])
    assert (two.before["version"], two.before["account"]) == (1, mask[0])
    assert (two.after["version"], two.after["account"], two.after["method"]) == (2, mask[1], "bank")
    assert two.after["payouts_blocked_until"] > two.before["payouts_blocked_until"]
    assert (two.actor_role, two.request_id, two.ip, two.user_agent) == (
        "finance_admin",
        "chg-1",
        "127.0.0.1",
        "finance-console/3",
    )
    # Masked only: neither number is anywhere in the entries.
    assert not any(acct[0] in str(row) for row in (one, two) for acct in (first, second))


async def test_suspending_records_the_status_it_left(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = await new_payee(api, world, "owner_record")
    for action in ("suspend", "reactivate"):
        r = await api.post(
            f"/v1/payees/{payee_id}/{action}",
            json={"reason": "review"},
            headers=world.headers("finance_admin", uuid.uuid4().hex),
        )
        assert r.status_code == 200, r.text
    [suspended] = await _trail(engine, payee_id, "payee.suspended")
    [reactivated] = await _trail(engine, payee_id, "payee.reactivated")
    assert (suspended.before, suspended.after) == ({"status": "active"}, {"status": "suspended"})
    assert (reactivated.before, reactivated.after) == (
        {"status": "suspended"},
        {"status": "active"},
    )
