"""The demo's money out (issue 14): a sponsor pays the demo community through Cashfree, a
milestone is delivered and released into the community's payable, the community becomes a
payee with a verified bank account, and finance settles it: a Payouts transfer, its UTR and
the settlement statement's PDF.

Over real HTTP against the stack, as the people involved would do it: the sponsor on the
hosted checkout, the community's owner and finance with their own tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from commdesk_billing.config import Settings
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.storage import LocalDocumentStore
from commdesk_billing.storage.factory import document_store

# The community's part of the sponsorship, in two milestones; the first is released.
SPONSORED_PAISE, VENUE_PAISE = 200_000, 120_000
MILESTONES = (
    {"title": "Venue", "amount_paise": VENUE_PAISE},
    {"title": "Prizes", "amount_paise": SPONSORED_PAISE - VENUE_PAISE},
)
# One of Cashfree's sandbox accounts whose transfers succeed (cashfree.md §6.2).
ACCOUNT, IFSC, HOLDER = "026291800001191", "YESB0000262", "Demo Community Trust"
# What the demo stack deducts, so the statement shows every line (finance sets these).
STACK_ENV = {
    "BILLING_SETTLEMENT_RESERVE_BPS": "500",  # 5 % held for 7 days
    "BILLING_SETTLEMENT_TDS_BPS": "100",  # income-tax TDS under 194-O, 1 %
    "BILLING_SETTLEMENT_TCS_BPS": "100",  # GST TCS under section 52, 1 %
    "BILLING_PAYOUT_FEE_PAISE": "118",  # Cashfree's ₹1 + 18 % GST, passed on
    "BILLING_SANDBOX_PAYOUT_STEP_S": "0.5",  # the sandbox moves a transfer on quicker
}


class Checks(Protocol):
    def check(self, ok: bool, what: str) -> None: ...

    def require(self, response: httpx.Response, status: int, what: str) -> Any: ...


async def poll(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    done: Callable[[Any], bool],
    timeout_s: float = 60,
) -> Any:
    deadline = time.monotonic() + timeout_s
    body: Any = None
    while time.monotonic() < deadline:
        body = (await client.get(url, headers=headers)).json()
        if done(body):
            return body
        await asyncio.sleep(0.2)
    return body


def _rupees(paise: int) -> str:
    return f"₹{paise / 100:,.2f}"


def _auth(settings: Settings, sub: str, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, sub=sub, role=role)}"}


async def money_out(
    settings: Settings,
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    *,
    community: str,
    owner: str,
    run: str,
    checks: Checks,
) -> None:
    """Steps 11-14 of the demo."""
    owner_auth = _auth(settings, owner, Role.member)
    finance = _auth(settings, "demo-finance", Role.finance_admin)
    await _sponsor(settings, client, browser, community, owner_auth, finance, run, checks)
    payee_id = await _payee(client, community, owner_auth, finance, run, checks)
    await _settle(settings, client, payee_id, owner_auth, finance, run, checks)


async def _sponsor(
    settings: Settings,
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    community: str,
    owner: dict[str, str],
    finance: dict[str, str],
    run: str,
    checks: Checks,
) -> None:
    sponsor = _auth(settings, f"demo-sponsor-{run}", Role.sponsor)
    body = {
        "community_id": community,
        "amount_paise": SPONSORED_PAISE,
        "purpose": "Demo Community hackathon",
        "milestones": list(MILESTONES),
        "customer_phone": "9999999999",
    }
    made = checks.require(
        await client.post(
            "/v1/sponsorships", json=body, headers={**sponsor, "Idempotency-Key": f"spons-{run}"}
        ),
        201,
        "a sponsor opens a sponsorship of the demo community",
    )
    print(
        f"11. sponsorship {made['id']} ({made['path']}): the community gets "
        f"{_rupees(made['amount_paise'])}; the sponsor pays {_rupees(made['total_paise'])} = "
        f"that + fee {_rupees(made['fee_paise'])} ({made['fee_rate']}) + GST "
        f"{_rupees(made['gst_paise'])}"
    )
    checks.check(
        made["total_paise"] == made["amount_paise"] + made["fee_paise"] + made["gst_paise"],
        "sponsorship: total = the community's part + fee + GST on the fee",
    )
    pay = made["payment"]
    url = pay.get("checkout_url") or ""
    paid = await browser.post(
        url.split("?", 1)[0],
        data={
            "payment_session_id": pay["payment_session_id"],
            "payment_method": "upi",
            "outcome": "success",
        },
    )
    checks.check(paid.status_code == 200, "the sponsor paid with UPI on the hosted checkout")
    funded = await poll(
        client, f"/v1/sponsorships/{made['id']}", sponsor, lambda s: s.get("status") == "funded"
    )
    checks.check(
        funded.get("status") == "funded" and funded.get("escrow_paise") == SPONSORED_PAISE,
        f"funded: {_rupees(SPONSORED_PAISE)} held in escrow ({funded.get('status')})",
    )
    docs = await poll(
        client,
        f"/v1/invoices?payment_id={pay['id']}",
        sponsor,
        lambda d: bool(d.get("data")) and all(x["pdf_available"] for x in d["data"]),
    )
    invoice = (docs.get("data") or [{}])[0]
    checks.check(
        invoice.get("taxable_paise") == made["fee_paise"]
        and invoice.get("total_paise") == made["fee_paise"] + made["gst_paise"],
        f"the platform's tax invoice {invoice.get('number')} is for its fee and GST only",
    )
    base = f"/v1/sponsorships/{made['id']}/milestones/1"
    checks.require(
        await client.post(f"{base}/deliver", headers=owner), 200, "the owner marks 'Venue' done"
    )
    released = checks.require(
        await client.post(
            f"{base}/release", headers={**finance, "Idempotency-Key": f"release-{run}"}
        ),
        200,
        "finance releases 'Venue'",
    )
    after = (await client.get(f"/v1/sponsorships/{made['id']}", headers=finance)).json()
    print(
        f"12. milestone 'Venue' {released['status']}: {_rupees(released['amount_paise'])} into "
        f"the community's payable; {_rupees(after['escrow_paise'])} still in escrow; fee "
        f"invoice {invoice.get('number')}"
    )
    checks.check(
        after["escrow_paise"] == SPONSORED_PAISE - VENUE_PAISE,
        "escrow holds exactly the unreleased milestone",
    )


async def _payee(
    client: httpx.AsyncClient,
    community: str,
    owner: dict[str, str],
    finance: dict[str, str],
    run: str,
    checks: Checks,
) -> str:
    """The community as a payee (made by its owner; found again on a later run) with its
    bank account verified at Cashfree."""
    made = await client.post(
        "/v1/payees",
        json={"kind": "community", "subject_id": community, "display_name": "Demo Community"},
        headers={**owner, "Idempotency-Key": f"payee-{run}"},
    )
    if made.status_code == 409:  # a payee already, from an earlier run
        found = await client.get(
            f"/v1/payees?kind=community&subject_id={community}", headers=finance
        )
        payee = checks.require(found, 200, "the community's payee found")["data"][0]
    else:
        payee = checks.require(made, 201, "the owner makes the community a payee")
    account = checks.require(
        await client.put(
            f"/v1/payees/{payee['id']}/payout-account",
            json={
                "method": "bank",
                "account_holder": HOLDER,
                "account_number": ACCOUNT,
                "ifsc": IFSC,
            },
            headers={**owner, "Idempotency-Key": f"account-{run}"},
        ),
        200,
        "the owner sets the community's bank account",
    )
    v = account["verification"]
    print(
        f"13. payee {payee['id']}: account {account['account_mask']} / {IFSC} "
        f"{v['status']} at Cashfree (name match {v['name_match_result']}, score "
        f"{v['name_match_score']}); payable now: {account['payable_now']}"
    )
    checks.check(
        v["status"] == "verified" and account["payable_now"] is True,
        "the account is verified and can be paid",
    )
    checks.check(ACCOUNT not in str(account), "the account number is never in an answer")
    return str(payee["id"])


async def _settle(
    settings: Settings,
    client: httpx.AsyncClient,
    payee_id: str,
    owner: dict[str, str],
    finance: dict[str, str],
    run: str,
    checks: Checks,
) -> None:
    ran = checks.require(
        await client.post(
            "/v1/settlements/runs",
            json={"payee_id": payee_id},
            headers={**finance, "Idempotency-Key": f"settle-{run}"},
        ),
        201,
        "finance settles the community now",
    )
    [outcome] = ran["outcomes"]
    made = outcome.get("settlement")
    if made is None:
        checks.check(False, f"a settlement is made (waiting: {outcome.get('waiting')})")
        return
    s = await poll(
        client,
        f"/v1/settlements/{made['id']}",
        owner,
        lambda x: x.get("status") in ("paid", "failed", "reversed"),
    )
    print(
        f"14. settlement {s['id']}: payable {_rupees(s['payable_paise'])} - reserve "
        f"{_rupees(s['reserve_paise'])} ({s['reserve_rate']}) = gross "
        f"{_rupees(s['gross_paise'])}; TDS 194-O {_rupees(s['tds_paise'])} ({s['tds_rate']}), "
        f"GST TCS {_rupees(s['tcs_paise'])} ({s['tcs_rate']}), fee {_rupees(s['fee_paise'])}; "
        f"net {_rupees(s['net_paise'])} {s['status']}, UTR {s['utr']}"
    )
    checks.check(
        s["gross_paise"] == s["tds_paise"] + s["tcs_paise"] + s["fee_paise"] + s["net_paise"]
        and s["payable_paise"] - s["reserves_held_paise"] == s["reserve_paise"] + s["gross_paise"],
        "settlement: payable - reserve = gross = TDS + TCS + fee + net",
    )
    checks.check(
        s["status"] == "paid" and bool(s["utr"]),
        f"the payout was paid by Cashfree with a UTR ({s['status']})",
    )
    pdf = await client.get(f"/v1/settlements/{s['id']}/statement", headers=owner)
    checks.check(
        pdf.status_code == 200 and pdf.content.startswith(b"%PDF"),
        f"the settlement statement PDF is served ({len(pdf.content)} bytes)",
    )
    store = document_store(settings)
    try:
        key = f"settlements/{s['id']}/{s['status']}.pdf"  # as `settlements.statement.key_of`
        where = str(store.root / key) if isinstance(store, LocalDocumentStore) else key
    finally:
        await store.aclose()
    print(f"    statement -> {where}")
