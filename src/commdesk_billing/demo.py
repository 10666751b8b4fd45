"""`commdesk-billing demo`: a wallet's life over real HTTP, then a ledger check.

Until the payments module lands, credits enter through a promotional grant; the purchase
flow (checkout through the Cashfree sandbox) replaces that step when it does.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from contextlib import suppress
from typing import Any

import httpx
from sqlalchemy import text

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import make_engine
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.security.jwt import Role, issue_token


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_ready(client: httpx.AsyncClient, proc: asyncio.subprocess.Process | None) -> None:
    for _ in range(150):
        if proc is not None and proc.returncode is not None:
            raise RuntimeError(f"API exited with code {proc.returncode}")
        with suppress(httpx.TransportError):
            if (await client.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("API did not become ready in 15 s")


class _Abort(Exception):
    """A step the rest of the demo depends on failed."""


def _require(response: httpx.Response, status: int, what: str, failures: list[str]) -> None:
    _check(response.status_code == status, what, failures)
    if response.status_code != status:
        print(f"         {response.status_code} {response.text[:500]}")
        raise _Abort(what)


def _check(ok: bool, what: str, failures: list[str]) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    if not ok:
        failures.append(what)


async def _post(
    client: httpx.AsyncClient, path: str, token: str, body: dict[str, Any], key: str
) -> httpx.Response:
    return await client.post(
        path, json=body, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    )


async def run_demo(settings: Settings, api_url: str | None) -> int:
    proc: asyncio.subprocess.Process | None = None
    if api_url is None:
        port = _free_port()
        api_url = f"http://127.0.0.1:{port}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "commdesk_billing.cli",
            "api",
            "--port",
            str(port),
            env={**os.environ, "BILLING_LOG_LEVEL": "WARNING"},
        )
    failures: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
            await _wait_ready(client, proc)
            run = uuid.uuid4().hex[:8]
            member = issue_token(settings, sub=f"demo-user-{run}", role=Role.member)
            finance = issue_token(settings, sub=f"demo-finance-{run}", role=Role.finance_admin)
            auth = {"Authorization": f"Bearer {member}"}

            print(f"CommDesk Billing demo against {api_url}")
            me = await client.get("/v1/wallets/me", headers=auth)
            _require(me, 200, "the member's wallet is created on first use", failures)
            wid = me.json()["id"]
            print(f"1. wallet {wid} created for demo-user-{run}")

            r = await _post(
                client,
                f"/v1/wallets/{wid}/grants",
                finance,
                {"credits": 1500, "reason": "welcome credits"},
                f"grant-{run}",
            )
            _require(r, 201, "finance grants 1500 promotional credits", failures)
            r = await _post(
                client,
                f"/v1/wallets/{wid}/holds",
                member,
                {"credits": 300, "reason": "event ticket reservation", "ttl_seconds": 600},
                f"hold-{run}",
            )
            _require(r, 201, "member holds 300 credits", failures)
            hold_id = r.json()["hold"]["id"]
            r = await _post(
                client, f"/v1/holds/{hold_id}/capture", member, {"credits": 200}, f"capture-{run}"
            )
            _check(
                r.status_code == 200 and r.json()["hold"]["released_credits"] == 100,
                "capture 200 of the hold, 100 released",
                failures,
            )
            debit = {"credits": 100, "reason": "community boost"}
            first = await _post(client, f"/v1/wallets/{wid}/debits", member, debit, f"debit-{run}")
            again = await _post(client, f"/v1/wallets/{wid}/debits", member, debit, f"debit-{run}")
            _check(
                first.status_code == 201
                and again.json() == first.json()
                and again.headers.get("idempotent-replayed") == "true",
                "debit 100, then the same Idempotency-Key again: one effect",
                failures,
            )
            r = await _post(
                client,
                f"/v1/wallets/{wid}/debits",
                member,
                {"credits": 10**6, "reason": "too much"},
                f"overdraw-{run}",
            )
            _check(
                r.status_code == 409 and r.json()["code"] == "insufficient_credits",
                "overdraw refused with 409 insufficient_credits",
                failures,
            )

            wallet = (await client.get("/v1/wallets/me", headers=auth)).json()
            print(
                f"2. wallet: available={wallet['available_credits']} "
                f"locked={wallet['locked_credits']} pending={wallet['pending_credits']}"
            )
            _check(
                wallet["available_credits"] == 1200 and wallet["locked_credits"] == 0,
                "balance is 1500 - 200 - 100 = 1200",
                failures,
            )
            page = (await client.get(f"/v1/wallets/{wid}/transactions", headers=auth)).json()
            print("3. statement (newest first):")
            for t in page["data"]:
                print(
                    f"   #{t['seq']:<3} {t['transaction_type']:<12} {t['credits']:>6}  "
                    f"{t['balance_before']:>6} -> {t['balance_after']:<6} {t['reason']}"
                )
        engine = make_engine(settings, direct=True, pool_size=2)
        try:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text("""
                    SELECT j.kind, a.code, e.amount FROM ledger_entries e
                      JOIN ledger_journals j ON j.id = e.journal_id
                      JOIN ledger_accounts a ON a.id = e.account_id
                     WHERE e.journal_id IN (SELECT journal_id FROM ledger_entries
                                             WHERE wallet_id = :w)
                     ORDER BY e.id"""),
                        {"w": uuid.UUID(wid)},
                    )
                ).all()
            print("4. journal (debit +, credit -):")
            for kind, code, amount in rows:
                print(f"   {kind:<16} {code.replace(wid, '<wallet>'):<40} {amount:>7}")
            await seal_pending(engine)
            report = await verify_ledger(engine)
        finally:
            await engine.dispose()
        for f in report.findings:
            print(f"   FAIL {f}")
        _check(report.ok, f"ledger verify clean ({report.stats})", failures)
    except _Abort:
        pass  # reported by _require; the summary below says FAILED
    finally:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
    print("demo: OK" if not failures else f"demo: FAILED ({len(failures)} check(s))")
    return 0 if not failures else 1
