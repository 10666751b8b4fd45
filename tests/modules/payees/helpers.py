"""Payees for any test: the sealing keys, Payouts settings pointed at a sandbox, and a
verified, payable payee in one call (`payable_payee`), made through the service exactly as
the API makes one (Cashfree's verification and beneficiary at the sandbox over HTTP).

    ring = test_key_ring()
    async with payouts_client(payout_settings(settings, sandbox_url)) as cf:
        payee, account = await payable_payee(engine, cf, ring, subject_id="c-42")
    # targets.payable_now(conn, now) now names payee.id, paid to account.beneficiary_id
"""

from __future__ import annotations

import base64
import os
import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.payouts import CashfreePayoutsClient
from commdesk_billing.modules.payees import service
from commdesk_billing.modules.payees.model import Payee, PayeeKind, PayoutAccount, PayoutMethod
from commdesk_billing.security.sealed import KeyRing
from tests.gateway.sandbox.conftest import PAYOUT_CLIENT_ID, PAYOUT_CLIENT_SECRET

# The sandbox's name-match account: the name at its bank is PRIYA SHARMA.
NAME_MATCH_ACCOUNT = ("50100000000017", "HDFC0000001")
INVALID_ACCOUNT = ("026291800001190", "YESB0000262")  # BAV: INVALID_BANK_ACCOUNT


def fresh_account() -> tuple[str, str]:
    """A 14-digit account no sandbox script names: valid at BAV (the name at the bank is the
    name sent: a DIRECT_MATCH), transfers to it succeed."""
    return str(uuid.uuid4().int)[:14], "UTIB0000123"


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def key_settings() -> dict[str, Any]:
    """Settings fields of a fresh sealing key ring."""
    return {
        "payout_account_keys": SecretStr(f'{{"t1": "{_key()}"}}'),
        "payout_account_key_id": "t1",
        "payout_fingerprint_key": SecretStr(_key()),
    }


def payout_settings(settings: Settings, sandbox_url: str, **more: Any) -> Settings:
    """`settings` with Payouts pointed at a sandbox (its test pair; one retry, short
    timeouts) and a fresh key ring."""
    return settings.model_copy(
        update={
            "cashfree_payout_base_url": f"{sandbox_url}/payout",
            "cashfree_verification_base_url": f"{sandbox_url}/verification",
            "cashfree_payout_client_id": PAYOUT_CLIENT_ID,
            "cashfree_payout_client_secret": SecretStr(PAYOUT_CLIENT_SECRET),
            "cashfree_payout_timeout_s": 5.0,
            "cashfree_payout_max_retries": 1,
            **key_settings(),
            **more,
        }
    )


async def payable_payee(
    engine: AsyncEngine,
    payouts: CashfreePayoutsClient,
    ring: KeyRing,
    *,
    kind: PayeeKind = PayeeKind.community,
    subject_id: str | None = None,
    account: tuple[str, str] | None = None,
    holder: str = "Priya Sharma",
    by: str = "tests",
) -> tuple[Payee, PayoutAccount]:
    """A new active payee (a community's unless `kind` says partner; the subject is not
    looked up) whose first bank account is verified at the sandbox, with a beneficiary:
    payable at once (no cooling-off on a first account). `account` is (number, IFSC), a
    fresh one by default."""
    number, ifsc = account or fresh_account()
    subject = subject_id or f"c-{uuid.uuid4().hex[:12]}"

    async def make(conn: Any) -> tuple[Payee, PayoutAccount]:
        payee = await service.create_payee(
            conn, kind=kind, subject_id=subject, display_name="Payee " + subject, by=by
        )
        acct, _ = await service.change_account(
            conn,
            client=payouts,
            ring=ring,
            policy=service.Policy(cooling_off=timedelta(hours=72), name_match_min="DIRECT_MATCH"),
            payee_id=payee.id,
            req=service.AccountRequest(PayoutMethod.bank, holder, number=number, ifsc=ifsc),
            by=by,
        )
        return payee, acct

    payee, acct = await in_transaction(engine, make)
    assert acct.verification_status.value == "verified", acct.verification_detail
    return payee, acct


async def change_account(
    engine: AsyncEngine,
    payouts: CashfreePayoutsClient,
    ring: KeyRing,
    payee_id: uuid.UUID,
    *,
    account: tuple[str, str] | None = None,
    holder: str = "Priya Sharma",
    cooling_off: timedelta = timedelta(hours=72),
) -> PayoutAccount:
    """Change a payee's bank account (a fresh one by default) as the API does. Also how a
    test gives up one of the sandbox's scripted accounts: Cashfree holds one beneficiary
    per account, and one account is one payee's at a time (409 `payout_account_in_use`),
    so a test that paid to a scripted account moves its payee off it when done."""
    number, ifsc = account or fresh_account()

    async def change(conn: Any) -> PayoutAccount:
        acct, _ = await service.change_account(
            conn,
            client=payouts,
            ring=ring,
            policy=service.Policy(cooling_off=cooling_off, name_match_min="GOOD_PARTIAL_MATCH"),
            payee_id=payee_id,
            req=service.AccountRequest(PayoutMethod.bank, holder, number=number, ifsc=ifsc),
            by="tests",
        )
        return acct

    result: PayoutAccount = await in_transaction(engine, change)
    return result


def after_cooling_off(account: PayoutAccount) -> datetime:
    """The first instant a settlement may pay `account`."""
    return account.payouts_blocked_until
