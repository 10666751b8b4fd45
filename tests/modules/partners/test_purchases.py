"""A partner's share end to end: our API, the worker crediting purchases paid on the
Cashfree sandbox's checkout, refunds through the sandbox, PostgreSQL. The stack's database
is sealed and verified (`ledger verify`, the partner checks included) when the run ends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.partners import invariants
from commdesk_billing.security.jwt import Role, issue_token
from tests.harness.stack import Stack

# pack_300: ₹300 inclusive of 18 % GST, taxable value 25 424 paise.
TAXABLE = 25424


def _finance(stack: Stack, key: bool = True) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {stack.token('finance-1', Role.finance_admin)}"}
    if key:
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return headers


def _service(stack: Stack) -> dict[str, str]:
    tok = issue_token(
        stack.settings, sub="referrals", role=Role.service, scopes=["partners:attribute"]
    )
    return {"Authorization": f"Bearer {tok}", "Idempotency-Key": uuid.uuid4().hex}


async def _partner(stack: Stack, share_bps: int = 1000) -> str:
    partner_id = f"p-{uuid.uuid4().hex[:10]}"
    r = await stack.api.post(
        "/v1/partners",
        json={"id": partner_id, "name": "Referrer", "share_bps": share_bps},
        headers=_finance(stack),
    )
    assert r.status_code == 201, r.text
    return partner_id


async def _attribute(
    stack: Stack, partner_id: str, user: str, start: datetime, end: datetime | None
) -> None:
    r = await stack.api.post(
        f"/v1/partners/{partner_id}/attributions",
        json={
            "user_id": user,
            "valid_from": start.isoformat(),
            "valid_until": end.isoformat() if end else None,
        },
        headers=_service(stack),
    )
    assert r.status_code == 201, r.text


async def _buy(stack: Stack, user: str) -> dict[str, Any]:
    tok = stack.token(user)
    order = await stack.buy(tok)
    await stack.pay(order)
    return await stack.wait_status(tok, order["id"], {"CREDITED"})


async def _earnings(stack: Stack, partner_id: str) -> dict[str, Any]:
    r = await stack.api.get(
        f"/v1/partners/{partner_id}/earnings", headers=_finance(stack, key=False)
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _partner_checks_clean(stack: Stack) -> None:
    report = await verify_ledger(stack.engine, checks=list(invariants.CHECKS))
    assert report.ok, [str(f) for f in report.findings]


async def test_an_attributed_buyers_purchase_posts_the_share(stack: Stack) -> None:
    partner_id = await _partner(stack, share_bps=1000)
    user = f"buyer-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    await _attribute(stack, partner_id, user, now - timedelta(days=1), now + timedelta(days=30))
    paid = await _buy(stack, user)
    assert paid["taxable_paise"] == TAXABLE
    earned = await _earnings(stack, partner_id)
    # round-half-up(25 424 x 1000 / 10 000) = 2 542 (2 542.4)
    assert (earned["earned_paise"], earned["payable_paise"], earned["share_count"]) == (
        2542,
        2542,
        1,
    )
    [share] = earned["shares"]
    assert (share["payment_id"], share["taxable_paise"], share["share_bps"]) == (
        paid["id"],
        TAXABLE,
        1000,
    )
    # The journal: the expense debited, the partner's payable credited.
    assert (
        await stack.scalar(
            "SELECT sum(e.amount) FROM ledger_entries e JOIN ledger_accounts a "
            "ON a.id = e.account_id WHERE a.code = 'inr:partner_expense' AND e.journal_id = "
            "(SELECT journal_id FROM partner_shares WHERE payment_id = :p)",
            p=paid["id"],
        )
        == 2542
    )
    await _partner_checks_clean(stack)


async def test_a_rate_change_applies_to_later_purchases_only(stack: Stack) -> None:
    partner_id = await _partner(stack, share_bps=1000)
    user = f"buyer-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    await _attribute(stack, partner_id, user, now - timedelta(hours=1), None)
    await _buy(stack, user)
    r = await stack.api.put(
        f"/v1/partners/{partner_id}",
        json={"name": "Referrer", "share_bps": 250, "reason": "new contract"},
        headers=_finance(stack, key=False),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["share_bps"], r.json()["version"]) == (250, 2)
    await _buy(stack, user)
    earned = await _earnings(stack, partner_id)
    # 2 542 at 10 %, then round-half-up(25 424 x 250 / 10 000) = 636 (635.6) at 2.5 %.
    assert sorted(
        (s["share_bps"], s["terms_version"], s["share_paise"]) for s in earned["shares"]
    ) == [
        (250, 2, 636),
        (1000, 1, 2542),
    ]
    assert earned["payable_paise"] == 2542 + 636


async def test_no_attribution_or_an_expired_one_posts_nothing(stack: Stack) -> None:
    partner_id = await _partner(stack)
    now = datetime.now(UTC)
    expired, future, unattributed = (f"buyer-{uuid.uuid4().hex}" for _ in range(3))
    await _attribute(stack, partner_id, expired, now - timedelta(days=60), now - timedelta(days=1))
    await _attribute(stack, partner_id, future, now + timedelta(days=1), None)
    for user in (expired, future, unattributed):
        paid = await _buy(stack, user)
        assert not await stack.scalar(
            "SELECT count(*) FROM partner_shares WHERE payment_id = :p", p=paid["id"]
        )
    earned = await _earnings(stack, partner_id)
    assert (earned["earned_paise"], earned["share_count"], earned["shares"]) == (0, 0, [])


async def test_an_inactive_partner_earns_nothing(stack: Stack) -> None:
    partner_id = await _partner(stack)
    user = f"buyer-{uuid.uuid4().hex}"
    await _attribute(stack, partner_id, user, datetime.now(UTC) - timedelta(hours=1), None)
    r = await stack.api.put(
        f"/v1/partners/{partner_id}",
        json={"name": "Referrer", "share_bps": 1000, "status": "inactive", "reason": "ended"},
        headers=_finance(stack, key=False),
    )
    assert r.status_code == 200, r.text
    await _buy(stack, user)
    assert (await _earnings(stack, partner_id))["share_count"] == 0


async def test_a_partial_refund_then_the_rest_takes_back_exactly_the_share(stack: Stack) -> None:
    partner_id = await _partner(stack, share_bps=1234)
    user = f"buyer-{uuid.uuid4().hex}"
    await _attribute(stack, partner_id, user, datetime.now(UTC) - timedelta(hours=1), None)
    paid = await _buy(stack, user)
    share = (await _earnings(stack, partner_id))["earned_paise"]
    assert share == (2 * TAXABLE * 1234 + 10000) // 20000 == 3137  # 3 137.3

    first = await stack.refund(paid["id"], amount_paise=10005)
    assert first.status_code == 202, first.text
    a = await stack.wait_refund(first.json()["id"], {"SUCCESS"})
    after_first = await _earnings(stack, partner_id)
    [reversal] = after_first["reversals"]
    # The first refund's taxable value is its share of the purchase's; so is what it took.
    assert reversal["refund_taxable_paise"] == a["taxable_paise"]
    assert reversal["share_paise"] == (2 * share * a["taxable_paise"] + TAXABLE) // (2 * TAXABLE)
    assert 0 < reversal["share_paise"] < share

    second = await stack.refund(paid["id"], amount_paise=19995)
    assert second.status_code == 202, second.text
    await stack.wait_refund(second.json()["id"], {"SUCCESS"})
    done = await _earnings(stack, partner_id)
    assert done["reversal_count"] == 2
    assert sum(r["share_paise"] for r in done["reversals"]) == share
    assert (done["reversed_paise"], done["payable_paise"]) == (share, 0)
    await _partner_checks_clean(stack)


async def test_a_refund_of_an_unshared_purchase_takes_nothing(stack: Stack) -> None:
    _tok, paid = await stack.credited()
    r = await stack.refund(paid["id"])
    assert r.status_code == 202, r.text
    await stack.wait_refund(r.json()["id"], {"SUCCESS"})
    assert not await stack.scalar(
        "SELECT count(*) FROM partner_share_reversals WHERE refund_id = :r", r=r.json()["id"]
    )
