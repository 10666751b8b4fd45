"""`commdesk-billing demo`: buy the ₹300 pack as a person would, refund part of it, check
the books.

Against a running stack (`--api-url`, the API of `commdesk-billing dev`) or one it starts
(sandbox, API, worker, scheduler as child processes). Over real HTTP it opens an order, pays it
on the sandbox's hosted checkout page with UPI, waits for the signed webhook to be verified,
processed and the credits granted, then spends a little; finance refunds ₹100 of it through
Cashfree; it prints the wallet, the statement, the journal, and the tax invoice and credit
note with where their PDFs are. It exits non-zero if anything does not add up.
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import make_engine
from commdesk_billing.demo_insight import buyer_steps, cli_env_of, finance_steps
from commdesk_billing.demo_payouts import STACK_ENV, money_out, poll
from commdesk_billing.demo_recurring import recurring
from commdesk_billing.demo_security import security
from commdesk_billing.modules.communities.mongo import seed_community
from commdesk_billing.modules.ledger import reads as ledger_reads
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.webhooks import service as webhooks
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.stack import running_stack
from commdesk_billing.storage import LocalDocumentStore
from commdesk_billing.storage.factory import document_store

PACK = "pack_300"
COMMUNITY, COMMUNITY_SPEND = "demo-community", 150
PRICE_PAISE, CREDITS, BONUS = 30_000, 3_200, 200
# ₹100 of ₹300 back: a third of the 3000 purchased credits, and of the 200 bonus rounded up.
REFUND_PAISE, REFUND_CREDITS, REFUND_BONUS = 10_000, 1_000, 67


class _Abort(Exception):
    """A step the rest of the demo depends on failed."""


class Checks:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            self.failures.append(what)

    def require(self, response: httpx.Response, status: int, what: str) -> Any:
        self.check(response.status_code == status, what)
        if response.status_code != status:
            print(f"         {response.status_code} {response.text[:500]}")
            raise _Abort(what)
        return response.json()


async def run_demo(settings: Settings, api_url: str | None) -> int:
    checks = Checks()
    # Against a running stack: its sandbox is where the settings point Cashfree.
    sandbox_url = settings.cashfree_base_url.removesuffix("/pg")
    maildir: Path | None = None
    cli_env = cli_env_of(None)
    async with AsyncExitStack() as exits:
        try:
            if api_url is None:
                print("starting the stack: Cashfree sandbox, API, worker, scheduler ...")
                # Its own Redis key space: fraud velocity counts what earlier demos on this
                # machine bought with the same sandbox instruments, and would hold this
                # run's purchases for review.
                own_keys = {"BILLING_REDIS_KEY_PREFIX": f"cdb-demo-{uuid.uuid4().hex[:8]}:"}
                stack = await exits.enter_async_context(
                    running_stack(settings_env={**STACK_ENV, **own_keys})
                )
                api_url, sandbox_url, maildir = stack.api_url, stack.sandbox_url, stack.maildir
                cli_env = cli_env_of(stack.env)
                # The stack's own MongoDB, where the demo community is written.
                settings = settings.model_copy(
                    update={
                        "mongodb_url": SecretStr(stack.env["BILLING_MONGODB_URL"]),
                        # Its tokens are RS256, signed with the stack's development key.
                        "dev_jwt_key_file": stack.env.get("BILLING_DEV_JWT_KEY_FILE"),
                    }
                )
            await _purchase(settings, api_url, sandbox_url, maildir, checks, cli_env)
        except _Abort:
            pass  # reported by require(); the summary says FAILED
        except RuntimeError as exc:
            checks.check(False, f"the stack runs ({exc})")
    print("demo: OK" if not checks.failures else f"demo: FAILED ({len(checks.failures)} check(s))")
    return 0 if not checks.failures else 1


async def _purchase(
    settings: Settings,
    api_url: str,
    sandbox_url: str,
    maildir: Path | None,
    checks: Checks,
    cli_env: dict[str, str],
) -> None:
    run = uuid.uuid4().hex[:8]
    # With an address, so the buyer's receipts and notices are emailed (the stack's SMTP sink).
    buyer_email = f"buyer-{run}@example.com"
    member = issue_token(settings, sub=f"demo-buyer-{run}", role=Role.member, email=buyer_email)
    auth = {"Authorization": f"Bearer {member}"}
    async with (
        httpx.AsyncClient(base_url=api_url, timeout=30) as client,
        httpx.AsyncClient(timeout=30, follow_redirects=False) as browser,
    ):
        print(f"CommDesk Billing demo against {api_url}")
        packs = checks.require(await client.get("/v1/packs", headers=auth), 200, "packs listed")
        print("1. packs: " + ", ".join(f"{p['code']}={p['credits']}" for p in packs["packs"]))
        order = checks.require(
            await client.post(
                "/v1/payments/orders",
                json={"pack_code": PACK, "customer_phone": "9999999999"},
                headers={**auth, "Idempotency-Key": f"demo-{run}"},
            ),
            201,
            f"order opened for {PACK} (₹{PRICE_PAISE // 100})",
        )
        print(
            f"2. order {order['order_id']}: ₹{order['amount_paise'] / 100:.2f} = taxable "
            f"₹{order['taxable_paise'] / 100:.2f} + GST ₹{order['gst_amount_paise'] / 100:.2f}"
            f" (CGST {order['cgst_paise']} + SGST {order['sgst_paise']} + IGST "
            f"{order['igst_paise']} paise)"
        )
        checks.check(
            order["taxable_paise"] + order["gst_amount_paise"] == PRICE_PAISE,
            "taxable value + GST = price, to the paisa",
        )
        url = order.get("checkout_url")
        if not url:
            checks.check(False, "the order has a checkout page (is this the sandbox?)")
            raise _Abort("no checkout url")
        # What a person does: open the hosted checkout, choose UPI, pay.
        page = await browser.get(url)
        checks.check(page.status_code == 200 and "checkout-form" in page.text, "checkout opens")
        action = url.split("?", 1)[0]
        paid = await browser.post(
            action,
            data={
                "payment_session_id": order["payment_session_id"],
                "payment_method": "upi",
                "outcome": "success",
            },
        )
        checks.check(paid.status_code == 200, "paid with UPI on the hosted checkout page")
        print("3. waiting for Cashfree's webhook, verification and the credit grant ...")
        payment = await poll(
            client,
            f"/v1/payments/{order['id']}",
            auth,
            lambda p: p.get("status") in ("CREDITED", "FAILED", "REVIEW", "CANCELLED", "EXPIRED"),
        )
        checks.check(
            payment.get("status") == "CREDITED" and payment.get("credits_granted") == CREDITS,
            f"payment CREDITED with {CREDITS} credits (status {payment.get('status')})",
        )
        if payment.get("status") != "CREDITED":
            raise _Abort("not credited")
        wallet = checks.require(await client.get("/v1/wallets/me", headers=auth), 200, "wallet")
        checks.check(wallet["available_credits"] == CREDITS, f"wallet holds {CREDITS} credits")
        wid = wallet["id"]
        spend = {"credits": 100, "reason": "community boost"}
        first = await client.post(
            f"/v1/wallets/{wid}/debits", json=spend, headers={**auth, "Idempotency-Key": run}
        )
        again = await client.post(
            f"/v1/wallets/{wid}/debits", json=spend, headers={**auth, "Idempotency-Key": run}
        )
        checks.check(
            first.status_code == 201 and again.content == first.content,
            "spend 100, twice with one Idempotency-Key: one effect",
        )
        wallet = (await client.get("/v1/wallets/me", headers=auth)).json()
        print(
            f"4. wallet: available={wallet['available_credits']} locked="
            f"{wallet['locked_credits']} lifetime purchased={wallet['lifetime_purchased_credits']}"
        )
        checks.check(wallet["available_credits"] == CREDITS - 100, "balance is 3200 - 100")
        page_ = (await client.get(f"/v1/wallets/{wid}/transactions", headers=auth)).json()
        print("5. statement (newest first):")
        for t in page_["data"]:
            print(
                f"   #{t['seq']:<3} {t['transaction_type']:<10} {t['credits']:>6}  "
                f"{t['balance_before']:>6} -> {t['balance_after']:<6} {t['reason']}"
            )
        kinds = sorted((t["transaction_type"], t["credits"]) for t in page_["data"])
        checks.check(
            kinds == [("bonus", BONUS), ("debit", 100), ("purchase", CREDITS - BONUS)],
            "statement: purchase 3000 + bonus 200, then the debit",
        )
        await _refund_and_documents(settings, client, auth, order, checks)
        owner = await _community(settings, client, auth, run, checks)
        await money_out(
            settings, client, browser, community=COMMUNITY, owner=owner, run=run, checks=checks
        )
        # Before the recurring steps: those move the sandbox's clock by days, and an order
        # opened after that expires (by our clock) before the sandbox's "now".
        await security(settings, client, browser, run=run, checks=checks)
        b2b_order = await buyer_steps(settings, client, browser, run=run, checks=checks)
        await recurring(
            settings,
            client,
            browser,
            member=auth,
            member_email=buyer_email,
            sandbox_url=sandbox_url,
            maildir=maildir,
            run=run,
            checks=checks,
        )
        await finance_steps(
            settings,
            client,
            api_url=api_url,
            cli_env=cli_env,
            order_id=b2b_order,
            run=run,
            checks=checks,
        )
    await _books(settings, order["id"], wid, checks)


async def _refund_and_documents(
    settings: Settings,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    order: dict[str, Any],
    checks: Checks,
) -> None:
    """Finance refunds ₹100 of the purchase; the buyer gets a tax invoice and a credit note."""
    finance = issue_token(settings, sub="demo-finance", role=Role.finance_admin)
    fin = {"Authorization": f"Bearer {finance}"}
    refund = checks.require(
        await client.post(
            f"/v1/payments/{order['id']}/refunds",
            json={"amount_paise": REFUND_PAISE, "reason": "demo: partial refund"},
            headers={**fin, "Idempotency-Key": f"demo-refund-{order['id']}"},
        ),
        202,
        f"refund of ₹{REFUND_PAISE // 100} requested by finance (credits held at once)",
    )
    print(
        f"6. refund {refund['refund_ref']}: ₹{refund['amount_paise'] / 100:.2f} takes back "
        f"{refund['base_credits']} + {refund['bonus_credits']} bonus credits; waiting for Cashfree"
    )
    done = await poll(
        client,
        f"/v1/refunds/{refund['id']}",
        fin,
        lambda r: r.get("status") in ("SUCCESS", "FAILED", "CANCELLED"),
    )
    checks.check(done.get("status") == "SUCCESS", f"refund SUCCESS ({done.get('status')})")
    wallet = (await client.get("/v1/wallets/me", headers=auth)).json()
    taken = REFUND_CREDITS + REFUND_BONUS
    checks.check(
        (refund["base_credits"], refund["bonus_credits"]) == (REFUND_CREDITS, REFUND_BONUS)
        and wallet["available_credits"] == CREDITS - 100 - taken,
        f"wallet: {CREDITS} - 100 spent - {taken} refunded = {wallet['available_credits']}",
    )
    docs = await poll(
        client,
        f"/v1/invoices?payment_id={order['id']}",
        auth,
        lambda d: len(d.get("data", [])) == 2 and all(x["pdf_available"] for x in d["data"]),
    )
    by_kind = {d["kind"]: d for d in docs.get("data", [])}
    checks.check(
        set(by_kind) == {"tax_invoice", "credit_note"}, "a tax invoice and a credit note issued"
    )
    if set(by_kind) != {"tax_invoice", "credit_note"}:
        raise _Abort("documents missing")
    store = document_store(settings)
    try:
        for kind in ("tax_invoice", "credit_note"):
            d = by_kind[kind]
            pdf = await client.get(d["pdf_url"], headers=auth)
            checks.check(
                pdf.status_code == 200 and pdf.content.startswith(b"%PDF"),
                f"{kind} {d['number']} PDF served ({len(pdf.content)} bytes)",
            )
            key = d["pdf_key"]
            where = str(store.root / key) if isinstance(store, LocalDocumentStore) else key
            print(
                f"7. {kind.replace('_', ' ')} {d['number']}: ₹{d['total_paise'] / 100:.2f} "
                f"(taxable {d['taxable_paise']}, CGST {d['cgst_paise']}, SGST "
                f"{d['sgst_paise']}, IGST {d['igst_paise']} paise) -> {where}"
            )
    finally:
        await store.aclose()
    note = by_kind["credit_note"]
    checks.check(
        note["total_paise"] == REFUND_PAISE
        and note["original_invoice_id"] == by_kind["tax_invoice"]["id"],
        "the credit note is for the refund and names the invoice",
    )


async def _community(
    settings: Settings, client: httpx.AsyncClient, auth: dict[str, str], run: str, checks: Checks
) -> str:
    """The member spends in a community (its record written to the stack's MongoDB, as
    CommDesk would have it); the platform keeps its fee; the owner sees the earnings."""
    owner = f"demo-owner-{run}"
    await seed_community(settings, COMMUNITY, name="Demo Community", owner_ids=[owner])
    body = {"credits": COMMUNITY_SPEND, "reason": "event ticket", "reference": f"ticket-{run}"}
    headers = {**auth, "Idempotency-Key": f"demo-community-{run}"}
    url = f"/v1/communities/{COMMUNITY}/spends"
    spend = checks.require(
        await client.post(url, json=body, headers=headers), 201, "spent in Demo Community"
    )
    again = await client.post(url, json=body, headers=headers)
    checks.check(
        again.status_code == 201 and again.json()["id"] == spend["id"],
        "the same spend twice with one Idempotency-Key: one effect",
    )
    r = spend["receipt"]
    print(
        f"9. spend in Demo Community: {r['gross_credits']} credits = fee {r['fee_credits']} "
        f"({r['fee_rate']}) + community {r['net_credits']}; basis {r['basis_paise']} paise "
        f"= fee {r['fee_paise']} + payable {r['net_paise']} ({r['rounding']})"
    )
    checks.check(
        r["fee_credits"] + r["net_credits"] == COMMUNITY_SPEND
        and r["fee_paise"] + r["net_paise"] == r["basis_paise"] > 0,
        "fee + net = gross, in credits and in paise",
    )
    wallet = (await client.get("/v1/wallets/me", headers=auth)).json()
    left = CREDITS - 100 - REFUND_CREDITS - REFUND_BONUS - COMMUNITY_SPEND
    checks.check(wallet["available_credits"] == left, f"wallet: {left} credits left")
    tok = issue_token(settings, sub=owner, role=Role.member)
    earned = checks.require(
        await client.get(
            f"/v1/communities/{COMMUNITY}/earnings", headers={"Authorization": f"Bearer {tok}"}
        ),
        200,
        "the owner reads the community's earnings",
    )
    print(
        f"10. Demo Community earnings: {earned['earned_credits']} credits, payable "
        f"₹{earned['payable_paise'] / 100:.2f}, fees {earned['fee_credits']} credits / "
        f"{earned['fee_paise']} paise over {earned['spends']} spend(s)"
    )
    checks.check(
        earned["earned_credits"] >= r["net_credits"] and earned["payable_paise"] >= r["net_paise"],
        "the spend is in the community's earnings",
    )
    return owner


async def _books(settings: Settings, payment_id: str, wallet_id: str, checks: Checks) -> None:
    engine = make_engine(settings, direct=True, pool_size=2)
    try:
        async with engine.connect() as conn:
            rows = await ledger_reads.legs(
                conn, journal_key_prefix=f"payment:{payment_id}:", wallet_id=uuid.UUID(wallet_id)
            )
            refund_legs = await ledger_reads.totals_by_account(
                conn,
                kinds=("refund.owed", "refund.paid"),
                metadata_key="payment_id",
                metadata_value=payment_id,
            )
            webhook = await webhooks.statuses_for_payment(conn, uuid.UUID(payment_id))
        print("8. journal (debit +, credit -):")
        for leg in rows:
            code = leg.account_code.replace(wallet_id, "<wallet>")
            print(f"   {leg.kind:<18} {code:<42} {leg.ledger:<8}{leg.amount:>8}")
        inr = sorted(leg.amount for leg in rows if leg.kind == "payment.captured")
        checks.check(
            inr == [-25424, -4576, 30000], "INR: clearing 30000 = deferred 25424 + GST 4576"
        )
        print(f"   refund journals: {refund_legs}")
        checks.check(
            refund_legs.get("inr:gateway_clearing") == -REFUND_PAISE
            and refund_legs.get("inr:refunds_payable") == 0
            and refund_legs.get("inr:deferred_revenue", 0) + refund_legs.get("inr:gst_payable", 0)
            == REFUND_PAISE,
            "refund: deferred revenue + GST back, paid out of gateway clearing",
        )
        per_ledger: dict[str, int] = {}
        for leg in rows:
            per_ledger[leg.ledger] = per_ledger.get(leg.ledger, 0) + leg.amount
        checks.check(all(v == 0 for v in per_ledger.values()), "every ledger sums to zero")
        checks.check("processed" in webhook, "Cashfree's signed webhook was verified and processed")
        await seal_pending(engine)
        report = await verify_ledger(engine)
    finally:
        await engine.dispose()
    for f in report.findings:
        print(f"   FAIL {f}")
    checks.check(report.ok, f"ledger verify clean ({report.stats})")
