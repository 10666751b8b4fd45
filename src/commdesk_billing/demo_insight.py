"""The demo's buyer details and cancellation (issue 19), and what finance sees of the run
(issue 17): the analytics, the trial balance and the GST summary over the API, the
reconciliation (`commdesk-billing reconcile`, as an operator runs it), the metrics the API
exposes to Prometheus, and the finance console signed in to as a staff member.

`buyer_steps` run before the recurring steps (those move the sandbox's clock by days; an
order opened after that expires by our clock before the sandbox's "now"), `finance_steps`
after everything else, so they look at the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from commdesk_billing.config import Settings

# The money-out steps' own helpers: a token's header and rupees as the demo prints them.
from commdesk_billing.demo_payouts import Checks, poll
from commdesk_billing.demo_payouts import _auth as _auth
from commdesk_billing.demo_payouts import _rupees as _rupees
from commdesk_billing.security.jwt import Role

IST = timezone(timedelta(hours=5, minutes=30))
# A published sample GSTIN, registered in Maharashtra (27): the seller is in Karnataka (29),
# so the business is charged IGST.
GSTIN = "27AAPFU0939F1ZV"
_DONE = ("CREDITED", "FAILED", "REVIEW", "CANCELLED", "EXPIRED")


async def buyer_steps(
    settings: Settings,
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    *,
    run: str,
    checks: Checks,
) -> str | None:
    """Steps 18-19: a registered business buys with its GSTIN (a B2B invoice), paying with
    an app wallet; a member cancels an order they opened. Returns the business's order id."""
    business = _auth(settings, f"demo-business-{run}", Role.member)
    profile = {
        "legal_name": "Acme Communities Private Limited",
        "address_line1": "4th Floor, 12 FC Road",
        "city": "Pune",
        "postal_code": "411004",
        "state_code": "27",
        "gstin": GSTIN,
    }
    checks.require(
        await client.put("/v1/billing-profile", json=profile, headers=business),
        200,
        "billing profile with a GSTIN",
    )
    order = checks.require(
        await client.post(
            "/v1/payments/orders",
            json={"pack_code": "pack_150", "customer_phone": "9876543210"},
            headers={**business, "Idempotency-Key": f"demo-b2b-{run}"},
        ),
        201,
        "the business's order",
    )
    paid = await browser.post(
        (order.get("checkout_url") or "").split("?", 1)[0],
        data={
            "payment_session_id": order["payment_session_id"],
            "payment_method": "app",
            "outcome": "success",
        },
    )
    checks.check(paid.status_code == 200, "the business paid with a wallet app (PhonePe)")
    done = await poll(
        client, f"/v1/payments/{order['id']}", business, lambda p: p.get("status") in _DONE
    )
    checks.check(
        done.get("status") == "CREDITED" and done.get("payment_group") == "wallet",
        "the wallet payment was credited, its method recorded (app, group wallet)",
    )
    docs = await poll(
        client,
        f"/v1/invoices?payment_id={order['id']}",
        business,
        lambda page: any(d["kind"] == "tax_invoice" for d in page.get("data", [])),
    )
    invoice = next((d for d in docs.get("data", []) if d["kind"] == "tax_invoice"), None)
    buyer = (invoice or {}).get("document", {}).get("buyer", {})
    print(
        f"18. B2B: {profile['legal_name']} (GSTIN {GSTIN}) bought pack_150 with a wallet app; "
        f"invoice {(invoice or {}).get('number')}: place of supply "
        f"{(invoice or {}).get('place_of_supply')}, IGST "
        f"{_rupees((invoice or {}).get('igst_paise', 0))}"
    )
    checks.check(
        invoice is not None
        and buyer.get("gstin") == GSTIN
        and invoice["place_of_supply"] == "27"
        and invoice["igst_paise"] > 0
        and invoice["cgst_paise"] == 0,
        "B2B tax invoice: the buyer's GSTIN and legal name, supplied in Maharashtra (IGST)",
    )
    line = ((invoice or {}).get("document", {}).get("lines") or [{}])[0]
    packs = checks.require(await client.get("/v1/packs", headers=business), 200, "packs")
    name = next((p["name"] for p in packs["packs"] if p["code"] == "pack_150"), "?")
    checks.check(
        name in str(line.get("description"))
        and line.get("unit_price_paise") == (invoice or {}).get("taxable_paise")
        and line.get("tax_paise") == (invoice or {}).get("igst_paise"),
        f"the invoice line names the pack ({name}), with its unit price and its tax",
    )

    member = _auth(settings, f"demo-canceller-{run}", Role.member)
    opened = checks.require(
        await client.post(
            "/v1/payments/orders",
            json={"pack_code": "pack_150", "customer_phone": "9876543210"},
            headers={**member, "Idempotency-Key": f"demo-cancel-{run}"},
        ),
        201,
        "an order to cancel",
    )
    cancelled = checks.require(
        await client.post(f"/v1/payments/{opened['id']}/cancel", headers=member),
        200,
        "cancel the open order",
    )
    print(f"19. order {opened['order_id']} cancelled by its buyer: {cancelled['status']}")
    checks.check(
        cancelled["status"] == "CANCELLED", "the order was terminated at Cashfree: CANCELLED"
    )
    return str(order["order_id"])


async def finance_steps(
    settings: Settings,
    client: httpx.AsyncClient,
    *,
    api_url: str,
    cli_env: dict[str, str],
    order_id: str | None,
    run: str,
    checks: Checks,
) -> None:
    """Steps 25-28: analytics and the books, reconciliation, metrics, the console."""
    finance = _auth(settings, "demo-finance", Role.finance_admin)
    today = datetime.now(IST).date().isoformat()
    period = f"from={today}&to={today}"
    summary = checks.require(
        await client.get(f"/v1/analytics/summary?{period}", headers=finance),
        200,
        "analytics summary",
    )
    totals = summary["totals"]
    print(
        f"25. today: {totals['payments_succeeded']} paid of {totals['payments_created']} "
        f"orders (success {(totals['success_rate_bp'] or 0) / 100:.1f} %), collected "
        f"{_rupees(totals['collected_paise'])}, revenue recognized "
        f"{_rupees(totals['revenue_recognized_paise'])}, fees {_rupees(totals['fees_paise'])}, "
        f"refunded {_rupees(totals['refunded_paise'])}"
    )
    checks.check(totals["payments_succeeded"] > 0, "analytics count today's paid orders")
    trial = checks.require(
        await client.get(f"/v1/analytics/trial-balance?{period}", headers=finance),
        200,
        "trial balance",
    )
    balanced = all(
        t["closing"] == 0 and t["opening"] == 0 and t["debits"] == t["credits"]
        for t in trial["ledgers"]
    )
    print(
        "    trial balance: "
        + ", ".join(
            f"{t['ledger']} debits {t['debits']:,} = credits {t['credits']:,}"
            for t in trial["ledgers"]
        )
        + f" over {len(trial['accounts'])} accounts"
    )
    checks.check(balanced, "trial balance: every ledger sums to zero")
    gst = checks.require(
        await client.get(f"/v1/analytics/gst-summary?{period}", headers=finance),
        200,
        "GST summary",
    )
    b2b = [g for g in gst["lines"] if g["section"] == "b2b" and g["place_of_supply"] == "27"]
    print(
        f"    GST summary: {gst['outward']['documents']} invoices, "
        f"{gst['credit_notes']['documents']} credit notes; B2B in state 27: "
        f"{sum(g['documents'] for g in b2b)} invoice(s)"
    )
    checks.check(bool(b2b), "GST summary: the business's invoice under B2B, state 27")

    # As an operator runs it; young payments are compared too (no grace), so the demo's own
    # purchases are matched against the sandbox's reports.
    env = {**cli_env, "BILLING_RECONCILIATION_GRACE_S": "0", "BILLING_LOG_LEVEL": "WARNING"}
    done = await asyncio.to_thread(_cli, env, "reconcile", "--json")
    report: dict[str, Any] = {}
    with contextlib.suppress(json.JSONDecodeError):
        report = json.loads(done.stdout) if done.stdout.strip() else {}
    parts = ", ".join(
        f"{s['source']} {s['matched']}/{s['checked']} matched" for s in report.get("sources", [])
    )
    print(f"26. reconcile: {parts}; open findings: {report.get('open_findings')}")
    checks.check(
        done.returncode == 0 and report.get("open_findings") == 0,
        "commdesk-billing reconcile: zero open findings",
    )

    async with httpx.AsyncClient(base_url=api_url, timeout=30) as raw:
        metrics = await raw.get("/metrics")
    lines = [ln for ln in metrics.text.splitlines() if ln.startswith("billing_payments_")]
    print(
        f"27. /metrics: {len(metrics.text.splitlines())} lines, e.g. {lines[0] if lines else '-'}"
    )
    checks.check(
        metrics.status_code == 200 and bool(lines), "the API's /metrics serves payment metrics"
    )

    email, password = f"finance-{run}@example.com", secrets.token_urlsafe(18)
    made = await asyncio.to_thread(
        _cli,
        {**cli_env, "DEMO_STAFF_PASSWORD": password},
        "staff",
        "create",
        "--email",
        email,
        "--role",
        "finance_admin",
        "--password-env",
        "DEMO_STAFF_PASSWORD",
    )
    checks.check(made.returncode == 0, "a finance staff account for the console")
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as console:
        signed = await console.post(
            "/console/sign-in",
            data={"email": email, "password": password},
            headers={"Origin": api_url},
        )
        found = await console.get(f"/console/payments?order_id={order_id or ''}")
    print(f"28. finance console {api_url}/console: signed in as {email}, searched {order_id}")
    checks.check(
        signed.status_code == 303
        and found.status_code == 200
        and bool(order_id)
        and str(order_id) in found.text,
        "the console: a staff member signs in and finds the business's payment",
    )


def _cli(env: dict[str, str], *args: str) -> Any:
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "commdesk_billing.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def cli_env_of(stack_env: dict[str, str] | None) -> dict[str, str]:
    """What the demo's own CLI calls run with: the stack's environment, else ours."""
    return dict(stack_env) if stack_env is not None else dict(os.environ)
