"""Payout accounts through the Payouts sandbox over real HTTP: verification and its name
match, failed versions, the beneficiary, cooling-off after a change (as settlements see it
through `targets`), a VPA, Cashfree away, concurrent changes, and the number never in the
clear: not in the database, an answer, a stored key, the audit log or a log line."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from structlog.testing import capture_logs

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.payees import invariants, service, targets, verification
from commdesk_billing.modules.payees.model import PayoutMethod
from commdesk_billing.security.sealed import SealError
from tests.modules.payees.conftest import PayeeApp, World
from tests.modules.payees.helpers import (
    INVALID_ACCOUNT,
    NAME_MATCH_ACCOUNT,
    after_cooling_off,
    change_account,
    fresh_account,
    payable_payee,
)
from tests.modules.payees.test_api import bank, new_payee, problem

COOLING_OFF = timedelta(hours=72)


async def put(
    api: httpx.AsyncClient,
    world: World,
    payee_id: str,
    body: dict[str, Any],
    caller: str = "owner_record",
    key: str | None = None,
) -> httpx.Response:
    return await api.put(
        f"/v1/payees/{payee_id}/payout-account", json=body, headers=world.headers(caller, key)
    )


async def payable_ids(engine: AsyncEngine, at: datetime) -> dict[uuid.UUID, int]:
    """payee id → the account version a settlement would pay at `at`."""

    async def read(conn: AsyncConnection) -> dict[uuid.UUID, int]:
        return {t.payee.id: t.account_version for t in await targets.payable_now(conn, at)}

    return await in_transaction(engine, read)


def at(text_time: str) -> datetime:
    return datetime.fromisoformat(text_time)


async def test_a_first_account_is_verified_and_payable_at_once(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = await new_payee(api, world, "owner_record")
    number, ifsc = fresh_account()
    r = await put(api, world, payee_id, bank((number, ifsc)))
    assert r.status_code == 200, r.text
    acct = r.json()
    assert acct["version"] == 1 and acct["method"] == "bank" and acct["ifsc"] == ifsc
    assert acct["account_mask"] == "X" * 10 + number[-4:]
    v = acct["verification"]
    assert (v["status"], v["name_match_result"], v["name_match_score"]) == (
        "verified",
        "DIRECT_MATCH",
        "100.00",
    )
    assert v["name_at_bank"] == "PRIYA SHARMA" and v["reference"] and v["verified_at"]
    assert acct["beneficiary_registered"] and acct["payable_now"]
    assert at(acct["payouts_blocked_until"]) == at(acct["created_at"])
    payable = await payable_ids(engine, datetime.now(UTC))
    assert payable[uuid.UUID(payee_id)] == 1
    # The target names the beneficiary Cashfree holds, for this very account.
    async with engine.connect() as conn:
        target = await targets.lock_target(conn, uuid.UUID(payee_id), datetime.now(UTC))
    assert target is not None and target.account_version == 1
    bene = await api_beneficiary(world, target.beneficiary_id)
    assert bene["beneficiary_instrument_details"]["bank_account_number"] == number
    read = await api.get(f"/v1/payees/{payee_id}/payout-account", headers=world.headers("auditor"))
    assert read.status_code == 200 and read.json() == acct


async def api_beneficiary(world: World, beneficiary_id: str) -> dict[str, Any]:
    settings = world.settings
    secret = settings.cashfree_payout_client_secret
    assert secret is not None and settings.cashfree_payout_client_id
    async with httpx.AsyncClient(
        base_url=settings.cashfree_payout_base_url,
        headers={
            "x-client-id": settings.cashfree_payout_client_id,
            "x-client-secret": secret.get_secret_value(),
            "x-api-version": "2024-01-01",
        },
    ) as cf:
        r = await cf.get("/beneficiary", params={"beneficiary_id": beneficiary_id})
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize(
    ("holder", "result", "status"),
    [
        ("Priya Sharma", "DIRECT_MATCH", "verified"),
        ("Priya S Sharma", "GOOD_PARTIAL_MATCH", "verified"),
        ("P Sharma", "MODERATE_PARTIAL_MATCH", "failed"),
        ("Sharma", "POOR_PARTIAL_MATCH", "failed"),
        ("Rahul Verma", "NO_MATCH", "failed"),
    ],
)
async def test_the_name_match_decides(
    holder: str,
    result: str,
    status: str,
    api: httpx.AsyncClient,
    world: World,
    engine: AsyncEngine,
) -> None:
    payee_id = await new_payee(api, world)
    r = await put(api, world, payee_id, bank(NAME_MATCH_ACCOUNT, holder=holder))
    assert r.status_code == 200, r.text
    v = r.json()["verification"]
    # The name at the bank only where it matched: a failed match would tell the caller
    # whose account the number is. finance_admin alone reads it then.
    shown = "PRIYA SHARMA" if status == "verified" else None
    assert (v["status"], v["name_match_result"], v["name_at_bank"]) == (status, result, shown)
    assert v["verified_by"] == "bank_account_verification"
    for reader, sees in (
        ("support", shown),
        ("owner_claim", shown),
        ("finance_admin", "PRIYA SHARMA"),
    ):
        read = await api.get(f"/v1/payees/{payee_id}/payout-account", headers=world.headers(reader))
        assert read.json()["verification"]["name_at_bank"] == sees, reader
    assert r.json()["payable_now"] is (status == "verified")
    assert r.json()["beneficiary_registered"] is (status == "verified")
    if status == "failed":
        assert f"matches {result}" in v["detail"] and "GOOD_PARTIAL_MATCH" in v["detail"]
        assert uuid.UUID(payee_id) not in await payable_ids(engine, datetime.now(UTC) + COOLING_OFF)
    # One Cashfree beneficiary per account: the next test's payee may take it over only
    # through its own versions, so this one gives the account up by changing it.
    await put(api, world, payee_id, bank(), caller="finance_admin")


async def test_an_invalid_account_is_stored_failed_and_never_paid(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = await new_payee(api, world)
    r = await put(api, world, payee_id, bank(INVALID_ACCOUNT))
    assert r.status_code == 200, r.text
    v = r.json()["verification"]
    assert v["status"] == "failed" and "INVALID_BANK_ACCOUNT" in v["detail"]
    assert v["name_match_result"] is None and not r.json()["beneficiary_registered"]
    assert uuid.UUID(payee_id) not in await payable_ids(engine, datetime.now(UTC) + COOLING_OFF)
    # A failed first account redirected nothing: the next is a first account, paid at once.
    r = await put(api, world, payee_id, bank())
    assert r.json()["version"] == 2 and r.json()["payable_now"], r.text


async def test_a_changed_account_waits_out_the_cooling_off(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = uuid.UUID(await new_payee(api, world))
    first = (await put(api, world, str(payee_id), bank())).json()
    assert first["payable_now"]
    second_body = bank()
    second = await put(api, world, str(payee_id), second_body, caller="owner_claim")
    assert second.status_code == 200, second.text
    changed = second.json()
    assert changed["version"] == 2 and changed["verification"]["status"] == "verified"
    blocked = at(changed["payouts_blocked_until"])
    assert blocked == at(changed["created_at"]) + COOLING_OFF
    assert not changed["payable_now"]
    # As a settlement sees it: neither version before the block passes (the first is
    # superseded), the new one from then on.
    just_before = blocked - timedelta(microseconds=1)
    assert payee_id not in await payable_ids(engine, just_before)
    async with engine.connect() as conn:
        assert await targets.lock_target(conn, payee_id, just_before) is None
    assert (await payable_ids(engine, blocked))[payee_id] == 2
    # The same account again, verified: nothing new, no new cooling-off.
    again = await put(api, world, str(payee_id), second_body)
    assert again.json()["version"] == 2 and again.json() == changed
    history = await versions(engine, payee_id)
    assert [(v, current) for v, current, _ in history] == [(1, False), (2, True)]
    assert history[0][2] == at(changed["created_at"])  # superseded as v2 was made


async def versions(engine: AsyncEngine, payee_id: uuid.UUID) -> list[tuple[int, bool, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT version, superseded_at IS NULL AS current, superseded_at "
                "FROM payout_accounts WHERE payee_id = :p ORDER BY version"
            ),
            {"p": payee_id},
        )
        return [(r.version, r.current, r.superseded_at) for r in rows]


async def test_a_vpa_is_verified_as_its_beneficiary(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = await new_payee(api, world)
    vpa = f"pr{uuid.uuid4().hex[:8]}@upi"
    r = await put(
        api, world, payee_id, {"method": "upi", "account_holder": "Priya Sharma", "vpa": vpa}
    )
    assert r.status_code == 200, r.text
    acct = r.json()
    assert (acct["method"], acct["ifsc"], acct["verification"]["status"]) == (
        "upi",
        None,
        "verified",
    )
    assert acct["verification"]["name_match_result"] is None  # BAV does not cover a VPA
    assert acct["account_mask"] == "pr" + "X" * 8 + "@upi" and vpa not in r.text
    assert acct["payable_now"] and uuid.UUID(payee_id) in await payable_ids(
        engine, datetime.now(UTC)
    )


async def test_a_suspended_payee_is_never_a_target(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = await new_payee(api, world)
    await put(api, world, payee_id, bank())
    fin = world.headers
    await api.post(
        f"/v1/payees/{payee_id}/suspend", json={"reason": "r"}, headers=fin("finance_admin")
    )
    read = await api.get(f"/v1/payees/{payee_id}/payout-account", headers=fin("owner_claim"))
    assert read.status_code == 200 and not read.json()["payable_now"]
    assert uuid.UUID(payee_id) not in await payable_ids(engine, datetime.now(UTC))
    await api.post(
        f"/v1/payees/{payee_id}/reactivate", json={"reason": "r"}, headers=fin("finance_admin")
    )
    assert uuid.UUID(payee_id) in await payable_ids(engine, datetime.now(UTC))


async def test_cashfree_away_is_a_503_that_stores_nothing(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine, payouts: httpx.AsyncClient
) -> None:
    payee_id = await new_payee(api, world)
    body, key = bank(), uuid.uuid4().hex
    assert (
        await payouts.patch("/_sandbox/payout-faults", json={"error_rate": 1.0})
    ).status_code == 200
    down = await put(api, world, payee_id, body, key=key)
    problem(down, 503, "gateway_unavailable")
    assert down.headers["retry-after"] == "5"
    assert body["account_number"] not in down.text
    assert await versions(engine, uuid.UUID(payee_id)) == []
    assert await stored_keys(engine, key) == 0
    assert (
        await payouts.patch("/_sandbox/payout-faults", json={"error_rate": 0})
    ).status_code == 200
    # The same request with the same key goes through now, and a repeat is its replay.
    up = await put(api, world, payee_id, body, key=key)
    assert up.status_code == 200 and up.json()["verification"]["status"] == "verified", up.text
    replay = await put(api, world, payee_id, body, key=key)
    assert replay.headers.get("idempotent-replayed") == "true" and replay.json() == up.json()
    assert [v for v, _, _ in await versions(engine, uuid.UUID(payee_id))] == [1]


async def test_concurrent_changes_leave_one_current_account(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine
) -> None:
    payee_id = await new_payee(api, world)
    answers = await asyncio.gather(*(put(api, world, payee_id, bank()) for _ in range(6)))
    assert [r.status_code for r in answers] == [200] * 6, [r.text for r in answers]
    assert sorted(r.json()["version"] for r in answers) == [1, 2, 3, 4, 5, 6]
    history = await versions(engine, uuid.UUID(payee_id))
    assert [(v, current) for v, current, _ in history] == [(v, v == 6) for v in range(1, 7)]
    # Only the first is exempt from the cooling-off.
    blocked = [
        r.json()
        for r in answers
        if at(r.json()["payouts_blocked_until"]) > at(r.json()["created_at"])
    ]
    assert sorted(a["version"] for a in blocked) == [2, 3, 4, 5, 6]
    report = await verify_ledger(engine, checks=list(invariants.CHECKS))
    assert report.ok, report.findings


async def test_one_account_never_collects_for_two_payees(
    api: httpx.AsyncClient, payee_app: PayeeApp, world: World, mongodb: Any
) -> None:
    from tests.modules.payees.conftest import new_community

    account = fresh_account()
    first = await new_payee(api, world)
    assert (await put(api, world, first, bank(account))).json()["payable_now"]
    other = World(payee_app.settings, await new_community(mongodb, "o-2"), "o-2")
    second = await new_payee(api, other)
    taken = await put(api, other, second, bank(account))
    problem(taken, 409, "payout_account_in_use")
    assert account[0] not in taken.text
    # Once the first payee moves away from it, the account may be another's (its old
    # Cashfree beneficiary gives way: the superseded version is never paid).
    assert (await put(api, world, first, bank())).status_code == 200
    moved = await put(api, other, second, bank(account))
    assert moved.json()["verification"]["status"] == "verified", moved.text


async def test_the_number_is_never_in_the_clear(
    api: httpx.AsyncClient,
    world: World,
    engine: AsyncEngine,
    payee_app: PayeeApp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    number, ifsc = fresh_account()
    payee_id = await new_payee(api, world)
    answers: list[httpx.Response] = []
    with capture_logs() as logs, caplog.at_level(logging.DEBUG):
        answers.append(await put(api, world, payee_id, bank((number, ifsc))))
        answers.append(await put(api, world, payee_id, bank((number, ifsc), holder="Priya Verma")))
        answers.append(
            await api.get(f"/v1/payees/{payee_id}/payout-account", headers=world.headers("support"))
        )
        answers.append(await put(api, world, payee_id, bank((number, "BAD"))))
    assert [r.status_code for r in answers] == [200, 200, 200, 422]
    for r in answers:
        assert number not in r.text and number not in str(r.headers)
    assert number not in repr(logs) and number not in caplog.text
    assert any(e["event"] == "payee.account.changed" for e in logs)
    async with engine.connect() as conn:
        for table in ("payout_accounts", "audit_logs", "idempotency_keys"):
            dump = (
                await conn.execute(
                    text(f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t")
                )
            ).scalar_one()
            assert number not in dump, table
        sealed = (
            await conn.execute(
                text(
                    "SELECT account_sealed FROM payout_accounts WHERE payee_id = :p AND version = 1"
                ),
                {"p": payee_id},
            )
        ).scalar_one()
    ring = payee_app.ring
    assert ring.open(sealed, owner=payee_id) == number
    with pytest.raises(SealError):
        ring.open(sealed, owner=str(uuid.uuid4()))  # another payee's row: does not open


async def test_the_helper_makes_a_payable_payee_in_one_call(
    engine: AsyncEngine, payee_app: PayeeApp
) -> None:
    payee, account = await payable_payee(engine, payee_app.cashfree, payee_app.ring)
    targets_now = await payable_ids(engine, datetime.now(UTC))
    assert targets_now[payee.id] == account.version == 1 and account.beneficiary_id
    changed = await change_account(engine, payee_app.cashfree, payee_app.ring, payee.id)
    assert changed.version == 2 and changed.payouts_blocked_until > datetime.now(UTC)
    assert payee.id not in await payable_ids(engine, datetime.now(UTC))
    assert (await payable_ids(engine, after_cooling_off(changed)))[payee.id] == 2


async def stored_keys(engine: AsyncEngine, key: str) -> int:
    async with engine.connect() as conn:
        n = (
            await conn.execute(
                text("SELECT count(*) FROM idempotency_keys WHERE key = :k"), {"k": key}
            )
        ).scalar_one()
    return int(n)


@pytest.mark.parametrize("same_account", [True, False])
async def test_a_beneficiary_left_by_an_attempt_that_never_committed(
    same_account: bool, api: httpx.AsyncClient, world: World, payee_app: PayeeApp
) -> None:
    """An attempt that added version 1's beneficiary at Cashfree and died before its commit:
    repeated with the same account, the beneficiary is taken as it is; with another, it is
    replaced (no row ever named it)."""
    payee_id = await new_payee(api, world)
    left = fresh_account()
    bene_id = verification.beneficiary_id_for(uuid.UUID(payee_id), 1)
    await payee_app.cashfree.add_beneficiary(
        beneficiary_id=bene_id, name="Priya Sharma", bank_account_number=left[0], bank_ifsc=left[1]
    )
    account = left if same_account else fresh_account()
    r = await put(api, world, payee_id, bank(account))
    assert r.status_code == 200 and r.json()["verification"]["status"] == "verified", r.text
    held = await api_beneficiary(world, bene_id)
    assert held["beneficiary_instrument_details"]["bank_account_number"] == account[0]


async def test_the_name_match_floor_is_a_setting(
    api: httpx.AsyncClient, world: World, engine: AsyncEngine, payee_app: PayeeApp
) -> None:
    payee_id = uuid.UUID(await new_payee(api, world))
    number, ifsc = NAME_MATCH_ACCOUNT

    async def change(conn: AsyncConnection) -> Any:
        return await service.change_account(
            conn,
            client=payee_app.cashfree,
            ring=payee_app.ring,
            policy=service.Policy(timedelta(0), "MODERATE_PARTIAL_MATCH"),
            payee_id=payee_id,
            req=service.AccountRequest(PayoutMethod.bank, "P Sharma", number=number, ifsc=ifsc),
            by="tests",
        )

    account, created = await in_transaction(engine, change)
    assert created and account.verification_status.value == "verified"
    assert account.name_match_result == "MODERATE_PARTIAL_MATCH"
    # Free the sandbox's name-match account for the other tests.
    await change_account(engine, payee_app.cashfree, payee_app.ring, payee_id)
