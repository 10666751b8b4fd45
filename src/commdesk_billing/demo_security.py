"""The demo's fraud and API security (issue 16): next to the normal purchase of step 1, a
purchase that fraud scoring sends to review (its credits held until finance releases them)
and one it blocks (a device finance deny-listed), the reasons support reads in the members'
risk profiles, and the audit log of what finance did.

Over real HTTP against the stack with the default scoring settings, as the people would do
it: members buying from the app (which sends `X-Device-Id`), finance and support with their
tokens. The review comes from real rules, not a switch: a brand-new account buying the
largest pack (`new_account_largest_pack`) on a device three other accounts bought from
(`device_accounts`) scores 60, the default review score.
"""

from __future__ import annotations

from typing import Any

import httpx

from commdesk_billing.config import Settings
from commdesk_billing.demo_payouts import Checks, poll
from commdesk_billing.security.jwt import Role, issue_token

_DONE = ("CREDITED", "FAILED", "REVIEW", "CANCELLED", "EXPIRED")


def _auth(settings: Settings, sub: str, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, sub=sub, role=role)}"}


async def security(
    settings: Settings,
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    *,
    run: str,
    checks: Checks,
) -> None:
    """Steps 15-17 of the demo (the recurring steps follow)."""
    finance = _auth(settings, "demo-finance", Role.finance_admin)
    support = _auth(settings, "demo-support", Role.support)
    packs = (await client.get("/v1/packs", headers=finance)).json()["packs"]
    smallest = min(packs, key=lambda p: p["price_paise"])
    largest = max(packs, key=lambda p: p["price_paise"])
    device = f"demo-device-{run}"

    # 15. Review: three accounts buy on one device, then a fourth, new, the largest pack.
    for n in range(3):
        sharer = _auth(settings, f"demo-sharer-{run}-{n}", Role.member)
        checks.require(
            await _order(client, sharer, smallest["code"], device, f"{run}-sharer-{n}"),
            201,
            f"account {n + 1} of the shared device buys {smallest['code']}",
        )
    newcomer = _auth(settings, f"demo-newcomer-{run}", Role.member)
    order = checks.require(
        await _order(client, newcomer, largest["code"], device, f"{run}-newcomer"),
        201,
        "the fourth account's order opens (review does not refuse it)",
    )
    await _pay(browser, order, checks)
    payment = await poll(
        client, f"/v1/payments/{order['id']}", newcomer, lambda p: p.get("status") in _DONE
    )
    wallet = (await client.get("/v1/wallets/me", headers=newcomer)).json()
    held = wallet.get("locked_credits", 0)
    checks.check(
        payment.get("status") == "CREDITED" and held == payment.get("credits_granted") and held,
        f"paid and credited, its {held} credits held for review (available "
        f"{wallet.get('available_credits')})",
    )
    queue = (await client.get("/v1/fraud/reviews?status=pending", headers=support)).json()
    review = next((r for r in queue.get("data", []) if r["payment_id"] == order["id"]), None)
    if review is None:
        checks.check(False, "the payment is in the review queue")
        return
    print(
        f"15. review: {largest['code']} by a new account on a device shared by 4 accounts: "
        f"score {review['score']}, rules {', '.join(review['rules'])}; "
        f"{held} credits held until a reviewer decides"
    )
    decided = await client.post(
        f"/v1/fraud/reviews/{review['id']}/decision",
        json={"decision": "release", "reason": "known household device"},
        headers=finance,
    )
    checks.check(decided.status_code == 200, "finance releases the review")
    after = (await client.get("/v1/wallets/me", headers=newcomer)).json()
    checks.check(
        after["locked_credits"] == 0 and after["available_credits"] == held,
        f"released: {after['available_credits']} credits available",
    )

    # 16. Block: finance deny-lists a device; a member's order from it is refused.
    stolen = f"demo-stolen-{run}"
    listed = await client.post(
        "/v1/fraud/lists",
        json={"list": "deny", "kind": "device", "value": stolen, "reason": "chargebacks"},
        headers=finance,
    )
    checks.check(listed.status_code == 201, "finance deny-lists a device")
    thief = _auth(settings, f"demo-thief-{run}", Role.member)
    refused = await _order(client, thief, smallest["code"], stolen, f"{run}-thief")
    body = refused.json()
    checks.check(
        refused.status_code == 403 and body.get("code") == "payment_blocked",
        "an order from the deny-listed device: 403 payment_blocked",
    )
    owner = (await client.get("/v1/wallets/me", headers=thief)).json().get("owner_id")
    profile = (await client.get(f"/v1/fraud/profiles/{owner}", headers=support)).json()
    checks.check(
        profile.get("blocked") == 1 and "deny_list" in profile.get("rules_fired", {}),
        "support sees why in the member's risk profile",
    )
    print(
        f"16. blocked: 403 {body.get('code')} ({body.get('detail')}); support's profile: "
        f"blocked {profile.get('blocked')}, rules {profile.get('rules_fired')}"
    )

    # 17. What finance did, in the audit log (read by an auditor).
    auditor = _auth(settings, "demo-auditor", Role.auditor)
    log = (await client.get("/v1/audit-logs?actor=demo-finance&limit=5", headers=auditor)).json()
    actions = [e["action"] for e in log.get("data", [])]
    checks.check(
        "fraud.review.released" in actions and "fraud.list.deny.added" in actions,
        "the release and the deny-list entry are in the audit log",
    )
    print(f"17. audit log (newest first, demo-finance): {', '.join(actions)}")


async def _order(
    client: httpx.AsyncClient, who: dict[str, str], pack: str, device: str, key: str
) -> httpx.Response:
    return await client.post(
        "/v1/payments/orders",
        json={"pack_code": pack, "customer_phone": "9999999999"},
        headers={**who, "Idempotency-Key": f"demo-{key}", "X-Device-Id": device},
    )


async def _pay(browser: httpx.AsyncClient, order: dict[str, Any], checks: Checks) -> None:
    url = order["checkout_url"]
    paid = await browser.post(
        url.split("?", 1)[0],
        data={
            "payment_session_id": order["payment_session_id"],
            "payment_method": "upi",
            "outcome": "success",
        },
    )
    checks.check(paid.status_code == 200, "paid with UPI on the hosted checkout page")
