"""The demo's recurring money (issue 15): usage metered and paid from the wallet, a
subscription paid in credits, a UPI AutoPay mandate approved on the hosted page, auto-recharge
on it (the spend that crosses the threshold, Cashfree's pre-debit notice, the sandbox clock
moved past the debit, the recharge credited), and the emails that were sent.

Over real HTTP against the stack, as the people involved would do it: finance with its token,
a CommDesk service reporting usage with its scope, the member on the hosted page. Only the
sandbox's clock is moved by the demo itself: a UPI AutoPay debit may happen no sooner than
24 hours after the payer was notified (cashfree.md §12.7, §15), and nobody waits a day.
"""

from __future__ import annotations

import asyncio
import email
import time
from datetime import UTC, datetime
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import httpx

from commdesk_billing.config import Settings
from commdesk_billing.demo_payouts import Checks, poll
from commdesk_billing.security.jwt import Role, issue_token

METER = "demo.api_calls"
# 120 units a month: the first 100 at 2 credits, the rest at 1 (graduated tiers).
USAGE_UNITS, USAGE_CREDITS = (60, 60), 100 * 2 + 20 * 1
PLAN, PLAN_CREDITS = "demo-pro", 300
MANDATE_MAX_PAISE = 50_000  # ₹500 a debit at most
RECHARGE_PACK, RECHARGE_CREDITS, THRESHOLD = "pack_300", 3_200, 1_000
# Past Cashfree's pre-debit notice (24 h) and the earliest debit date (the next day, or the
# one after when asked after 21:00 IST), with room to spare.
CLOCK_ADVANCE_S = 49 * 3600


def _auth(settings: Settings, sub: str, role: Role, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, sub=sub, role=role, **kw)}"}


async def recurring(
    settings: Settings,
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    *,
    member: dict[str, str],
    member_email: str,
    sandbox_url: str,
    maildir: Path | None,
    run: str,
    checks: Checks,
) -> None:
    """Steps 20-24 of the demo, on the buyer's wallet."""
    finance = _auth(settings, "demo-finance", Role.finance_admin)
    wallet = checks.require(await client.get("/v1/wallets/me", headers=member), 200, "wallet")
    wid, start = wallet["id"], wallet["available_credits"]
    left = await _usage(settings, client, finance, wid, start, run, checks)
    left = await _subscription(client, finance, member, wid, left, run, checks)
    mandate = await _mandate(client, browser, member, member_email, run, checks)
    if mandate is not None:
        await _auto_recharge(settings, client, member, wid, left, mandate, sandbox_url, checks)
    await _emails(maildir, member_email, checks)


async def _usage(
    settings: Settings,
    client: httpx.AsyncClient,
    finance: dict[str, str],
    wid: str,
    start: int,
    run: str,
    checks: Checks,
) -> int:
    tiers = [
        {"up_to": 100, "millicredits_per_unit": 2000},
        {"up_to": None, "millicredits_per_unit": 1000},
    ]
    book = await client.get(f"/v1/usage/price-book?meter={METER}", headers=finance)
    if book.status_code == 404:  # a second run against the same database keeps the first's
        checks.require(
            await client.post(
                "/v1/usage/price-book",
                json={"meter": METER, "tiers": tiers, "reason": "demo price book"},
                headers={**finance, "Idempotency-Key": f"demo-price-{METER}"},
            ),
            201,
            f"price book for {METER}: 2 credits a unit up to 100 a month, then 1",
        )
    service = _auth(settings, "demo-events-svc", Role.service, scopes=["usage:write"])
    now = datetime.now(UTC).isoformat()
    batch = {
        "events": [
            {
                "event_id": f"demo-{run}-{i}",
                "meter": METER,
                "quantity": q,
                "wallet_id": wid,
                "occurred_at": now,
            }
            for i, q in enumerate(USAGE_UNITS)
        ]
    }
    first = checks.require(
        await client.post("/v1/usage/events", json=batch, headers=service), 200, "usage reported"
    )
    again = checks.require(
        await client.post("/v1/usage/events", json=batch, headers=service), 200, "usage replayed"
    )
    charged = sum(r["debited_credits"] for r in first["results"])
    print(
        f"20. usage: {sum(USAGE_UNITS)} units of {METER} rated {charged} credits "
        f"(graduated tiers); the same batch again: {again['duplicate']} duplicates, no charge"
    )
    # The buyer's wallet used nothing this month before: the tiers give exactly 220 credits.
    checks.check(
        first["accepted"] == len(USAGE_UNITS)
        and again["duplicate"] == len(USAGE_UNITS)
        and charged == USAGE_CREDITS,
        f"each event charged once ({charged} credits in all), the replay a duplicate",
    )
    return start - int(charged)


async def _subscription(
    client: httpx.AsyncClient,
    finance: dict[str, str],
    member: dict[str, str],
    wid: str,
    left: int,
    run: str,
    checks: Checks,
) -> int:
    plan = {
        "code": PLAN,
        "name": "Demo Pro",
        "price_credits": PLAN_CREDITS,
        "interval_unit": "month",
        "interval_count": 1,
        "grace_period_seconds": 7 * 86400,
        "dunning_offsets_seconds": [86400, 3 * 86400],
        "active": True,
    }
    plans = (await client.get("/v1/subscription-plans", headers=finance)).json()
    if not any(p.get("code") == PLAN for p in plans.get("data", plans.get("plans", []))):
        checks.require(
            await client.post(
                "/v1/subscription-plans",
                json=plan,
                headers={**finance, "Idempotency-Key": f"demo-plan-{PLAN}"},
            ),
            201,
            f"plan {PLAN}: {PLAN_CREDITS} credits a month",
        )
    sub = checks.require(
        await client.post(
            "/v1/subscriptions",
            json={"plan_code": PLAN},
            headers={**member, "Idempotency-Key": f"demo-sub-{run}"},
        ),
        201,
        f"subscribed to {PLAN}, the first month paid from the wallet",
    )
    print(
        f"21. subscription {sub['id']}: {PLAN} v{sub['plan_version']} {sub['status']}, "
        f"period {sub['current_period']} until {sub['current_period_end']}; renewed by the "
        "scheduler from the wallet, with dunning and a grace period"
    )
    wallet = (await client.get(f"/v1/wallets/{wid}", headers=member)).json()
    checks.check(
        wallet["available_credits"] == left - PLAN_CREDITS,
        f"wallet: {left} - {PLAN_CREDITS} = {wallet['available_credits']}",
    )
    return int(wallet["available_credits"])


async def _mandate(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    member: dict[str, str],
    member_email: str,
    run: str,
    checks: Checks,
) -> dict[str, Any] | None:
    mandate = checks.require(
        await client.post(
            "/v1/mandates",
            json={
                "max_amount_paise": MANDATE_MAX_PAISE,
                "customer_phone": "9999999999",
                "customer_email": member_email,
            },
            headers={**member, "Idempotency-Key": f"demo-mandate-{run}"},
        ),
        201,
        f"UPI AutoPay mandate asked for, ₹{MANDATE_MAX_PAISE // 100} a debit at most",
    )
    url = mandate.get("authorization_url")
    if not url:
        checks.check(False, "the mandate has an authorization page (is this the sandbox?)")
        return None
    page = await browser.get(url)
    checks.check(page.status_code == 200, "the hosted authorization page opens")
    session = url.split("subscription_session_id=", 1)[1].split("&", 1)[0]
    approved = await browser.post(
        url.split("?", 1)[0],
        data={"subscription_session_id": session, "payment_method": "upi", "outcome": "approve"},
    )
    checks.check(approved.status_code == 200, "approved with UPI AutoPay on the hosted page")
    done = await poll(
        client,
        f"/v1/mandates/{mandate['id']}",
        member,
        lambda m: m.get("status") in ("active", "failed", "revoked", "expired"),
    )
    checks.check(done.get("status") == "active", f"mandate active ({done.get('status')})")
    print(
        f"22. mandate {done['id']}: {done.get('status')}, UMN {done.get('authorization_reference')}"
        f", at most ₹{done['max_amount_paise'] / 100:.2f} a debit"
    )
    return done if done.get("status") == "active" else None


async def _auto_recharge(
    settings: Settings,
    client: httpx.AsyncClient,
    member: dict[str, str],
    wid: str,
    left: int,
    mandate: dict[str, Any],
    sandbox_url: str,
    checks: Checks,
) -> None:
    setup = {
        "enabled": True,
        "threshold": THRESHOLD,
        "pack_code": RECHARGE_PACK,
        "customer_phone": "9999999999",
        "mandate_id": mandate["id"],
        "max_recharges_per_day": 2,
    }
    cfg = checks.require(
        await client.put(f"/v1/wallets/{wid}/auto-recharge", json=setup, headers=member),
        200,
        f"auto-recharge on: below {THRESHOLD} credits, buy {RECHARGE_PACK} on the mandate",
    )
    spend = left - THRESHOLD + 37  # across the level
    checks.require(
        await client.post(
            f"/v1/wallets/{wid}/debits",
            json={"credits": spend, "reason": "demo: a busy week"},
            headers={**member, "Idempotency-Key": f"demo-burn-{wid}"},
        ),
        201,
        f"spend {spend}: {left} -> {left - spend}, below the level {cfg.get('trigger_level')}",
    )
    pending = await poll(
        client,
        f"/v1/wallets/{wid}",
        member,
        lambda w: w.get("pending_credits", 0) > 0,
    )
    checks.check(
        pending.get("pending_credits") == RECHARGE_CREDITS,
        f"recharge pending: {pending.get('pending_credits')} credits shown as pending",
    )
    notified = await poll(
        client,
        f"/v1/wallets/{wid}/auto-recharge/events",
        member,
        lambda e: any(d.get("decision") == "notified" for d in e.get("data", [])),
    )
    checks.check(
        any(d.get("decision") == "notified" for d in notified.get("data", [])),
        "Cashfree notified the payer before the debit (pre-debit notice)",
    )
    print(
        f"23. auto-recharge: {spend} spent, the wallet crossed {THRESHOLD}; {RECHARGE_PACK} "
        f"charged on the mandate after Cashfree's pre-debit notice; {RECHARGE_CREDITS} credits "
        "pending. Moving the sandbox clock 49 hours, past the earliest debit ..."
    )
    pg = {"x-client-id": settings.cashfree_client_id}
    pg["x-client-secret"] = settings.cashfree_client_secret.get_secret_value()
    moved = await client.post(
        f"{sandbox_url}/_sandbox/clock", json={"advance_seconds": CLOCK_ADVANCE_S}, headers=pg
    )
    checks.check(moved.status_code == 200, "sandbox clock moved")
    after = await poll(
        client,
        f"/v1/wallets/{wid}",
        member,
        lambda w: w.get("pending_credits") == 0,
        timeout_s=90,
    )
    expected = left - spend + RECHARGE_CREDITS
    checks.check(
        after.get("available_credits") == expected,
        f"recharge credited: {left - spend} + {RECHARGE_CREDITS} = "
        f"{after.get('available_credits')}",
    )
    log = (await client.get(f"/v1/wallets/{wid}/auto-recharge/events", headers=member)).json()
    steps = [f"{d['decision']}{'/' + d['reason'] if d.get('reason') else ''}" for d in log["data"]]
    print("    decisions (oldest first): " + ", ".join(reversed(steps)))


def _subjects(maildir: Path, to: str) -> list[str]:
    """The subjects of the emails sent to `to` (the sink keeps earlier runs' too), oldest
    first."""
    found = []
    for path in sorted((maildir / "new").glob("*"), key=lambda p: p.stat().st_mtime):
        message = email.message_from_bytes(path.read_bytes())
        if to in message.get("To", ""):
            found.append(str(make_header(decode_header(message.get("Subject", "")))))
    return found


async def _emails(maildir: Path | None, to: str, checks: Checks) -> None:
    if maildir is None:
        print("24. emails: sent through the configured SMTP relay (not shown here)")
        return
    # The scheduler sends what the worker recorded every few seconds.
    wanted = ("Receipt", "Refund", "low", "Upcoming automatic recharge", "succeeded")
    deadline = time.monotonic() + 60
    subjects = _subjects(maildir, to)
    while time.monotonic() < deadline and not all(any(w in s for s in subjects) for w in wanted):
        await asyncio.sleep(1)
        subjects = _subjects(maildir, to)
    print(f"24. emails to {to} in {maildir / 'new'} ({len(subjects)}):")
    for s in subjects:
        print(f"    - {s}")
    checks.check(
        all(any(w in s for s in subjects) for w in wanted),
        "emails: receipts, refund, low balance, the recharge notice and its success",
    )
