"""What the settlements tests share: a payable payee (a partner's or a community's, paid by
UPI or to a bank account, verified and given its Cashfree beneficiary at a sandbox by the
payees' own service, exactly as the payees API stores one), money it earned through real
journals (partner shares posted by the partners' own entry point), waiting for a
settlement's status, the sandbox's Payouts controls."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.factory import payouts_client
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.modules.communities.mongo import community_directory
from commdesk_billing.modules.partners import service as partners
from commdesk_billing.modules.payees import service as payees
from commdesk_billing.modules.payees.model import PayeeKind, PayoutAccount, PayoutMethod
from commdesk_billing.modules.settlements import service
from commdesk_billing.modules.users import service as users
from commdesk_billing.security.sealed import KeyRing
from tests.modules.payees.helpers import change_account, payable_payee

# Test keys only: the payees' sealing ring (a stack's settings carry none of their own).
_RING = KeyRing(keys={"test1": os.urandom(32)}, current="test1", fingerprint_key=os.urandom(32))


@dataclass(frozen=True)
class MadePayee:
    id: uuid.UUID
    partner_id: str  # the payee's subject: a partner's id, or a community's
    account: PayoutAccount  # its current account, as the payees' service stored it
    kind: str = "partner"

    @property
    def payable_code(self) -> str:
        return f"{self.kind}:{self.partner_id}:payable"

    @property
    def beneficiary_id(self) -> str:
        assert self.account.beneficiary_id is not None
        return self.account.beneficiary_id

    @property
    def vpa(self) -> str | None:
        return self.account.vpa


def _policy(settings: Settings) -> payees.Policy:
    """The policy the payees API applies (`modules/payees/api.py`)."""
    return payees.Policy(
        cooling_off=timedelta(seconds=settings.payout_cooling_off_s),
        name_match_min=settings.payout_name_match_min,
    )


async def make_payee(
    engine: AsyncEngine,
    settings: Settings,
    *,
    cooling_off: timedelta | None = None,
    community_id: str | None = None,
    bank: tuple[str, str] | None = None,
    vpa: str | None = None,
) -> MadePayee:
    """A partner's payee (or `community_id`'s; the community must be in MongoDB for the
    routes that look it up) made through the payees' service against the sandbox
    `settings` point at: a fresh UPI VPA (or `vpa`, or `bank`: an account and IFSC, one of
    Cashfree's test accounts say), verified, with its beneficiary; payable at once.
    With `cooling_off`, the payee then changes to a fresh bank account as the API does, so
    it is payable only once that cooling-off has passed. One account is one payee's at a
    time: a scripted account or VPA may be used by one payee per database."""
    subject = community_id or f"p-{uuid.uuid4().hex[:12]}"
    kind = PayeeKind.community if community_id else PayeeKind.partner
    if kind is PayeeKind.partner:
        await in_transaction(
            engine,
            lambda conn: partners.create_partner(
                conn, partner_id=subject, name="Referrer", share_bps=5000, reason="t", by="t"
            ),
        )
    client = payouts_client(settings)
    try:
        if bank is not None:
            payee, account = await payable_payee(
                engine, client, _RING, kind=kind, subject_id=subject, account=bank
            )
        else:
            request = payees.AccountRequest(
                PayoutMethod.upi, "Priya Sharma", vpa=vpa or f"payee{uuid.uuid4().hex[:10]}@upi"
            )

            async def upi(conn: AsyncConnection) -> tuple[Any, PayoutAccount]:
                made = await payees.create_payee(
                    conn, kind=kind, subject_id=subject, display_name="Payee", by="tests"
                )
                acct, _ = await payees.change_account(
                    conn,
                    client=client,
                    ring=_RING,
                    policy=_policy(settings),
                    payee_id=made.id,
                    req=request,
                    by="tests",
                )
                return made, acct

            payee, account = await in_transaction(engine, upi)
        assert account.verification_status.value == "verified", account.verification_detail
        if cooling_off is not None:
            account = await change_account(engine, client, _RING, payee.id, cooling_off=cooling_off)
            assert account.payouts_blocked_until > datetime.now(UTC)
    finally:
        await client.aclose()
    return MadePayee(payee.id, subject, account, kind.value)


async def move_account(
    engine: AsyncEngine,
    settings: Settings,
    payee: MadePayee,
    account: tuple[str, str],
    cooling_off: timedelta = timedelta(hours=72),
) -> PayoutAccount:
    """The payee changes to the bank `account` as the payees API changes one (verified at
    the sandbox `settings` point at; stored `failed` when Cashfree refuses it)."""
    client = payouts_client(settings)
    try:
        return await change_account(
            engine, client, _RING, payee.id, account=account, cooling_off=cooling_off
        )
    finally:
        await client.aclose()


@dataclass(frozen=True)
class _Purchase:
    id: uuid.UUID
    user_id: uuid.UUID
    taxable_paise: int


async def earn(engine: AsyncEngine, payee: MadePayee, paise: int) -> uuid.UUID:
    """The partner earns exactly `paise`: a credited purchase of twice that taxable value by
    a user attributed to it (5000 bps), posted by the partners' own entry point. The
    purchase's (payment's) id."""

    async def work(conn: AsyncConnection) -> uuid.UUID:
        user = f"u-{uuid.uuid4().hex}"
        await partners.attribute(
            conn,
            partner_id=payee.partner_id,
            user_external_id=user,
            valid_from=datetime.now(UTC) - timedelta(hours=1),
            valid_until=None,
            by="t",
        )
        purchase = _Purchase(uuid.uuid4(), await users.ensure_user(conn, user), 2 * paise)
        share = await partners.on_purchase_credited(conn, purchase)
        assert share is not None and share.share_paise == paise
        return purchase.id

    result: uuid.UUID = await in_transaction(engine, work)
    return result


@contextlib.asynccontextmanager
async def directory(settings: Settings) -> AsyncIterator[CommunityDirectory]:
    """A community directory built from `settings` as the processes build theirs (its
    MongoDB client connects on first use: a partner payee's run never asks it)."""
    made = community_directory(settings)
    try:
        yield made
    finally:
        await made.aclose()


async def settle_run(engine: AsyncEngine, settings: Settings, **kw: Any) -> list[service.Outcome]:
    """`service.run` with a directory of `settings`' own, as a process would ask it."""
    async with directory(settings) as communities:
        return await service.run(engine, settings, communities, **kw)


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def payable(engine: AsyncEngine, payee: MadePayee) -> int:
    return int(
        await scalar(
            engine,
            """SELECT coalesce(-sum(e.amount), 0) FROM ledger_entries e
                 JOIN ledger_accounts a ON a.id = e.account_id WHERE a.code = :c""",
            c=payee.payable_code,
        )
    )


async def wait_status(
    engine: AsyncEngine, settlement_id: uuid.UUID, wanted: set[str], timeout_s: float = 30
) -> str:
    """Poll until the settlement is in one of `wanted`; an ended status not wanted fails
    at once."""
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        status = str(
            await scalar(engine, "SELECT status FROM settlements WHERE id = :id", id=settlement_id)
        )
        if status in wanted:
            return status
        if status in ("failed", "reversed") and status not in wanted:
            raise AssertionError(f"settlement ended {status}, wanted {wanted}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"settlement stayed {status}, wanted {wanted}")


async def wait_attempts(engine: AsyncEngine, settlement_id: uuid.UUID, n: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        have = await scalar(
            engine,
            "SELECT count(*) FROM settlement_transfers WHERE settlement_id = :id "
            "AND status <> 'new'",
            id=settlement_id,
        )
        if int(have) >= n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"settlement {settlement_id} has fewer than {n} attempts sent")


class Payouts:
    """The sandbox's Payouts controls (its own pair)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def faults(self, **faults: Any) -> None:
        r = await self.client.patch("/_sandbox/payout-faults", json=faults)
        assert r.status_code == 200, r.text

    async def configure(self, **settings: Any) -> None:
        r = await self.client.patch("/_sandbox/payout-settings", json=settings)
        assert r.status_code == 200, r.text

    async def advance(self, seconds: float) -> None:
        r = await self.client.post("/_sandbox/clock", json={"advance_seconds": seconds})
        assert r.status_code == 200, r.text

    async def transfers(self, transfer_ids: set[str]) -> list[dict[str, Any]]:
        r = await self.client.get("/_sandbox/payouts")
        assert r.status_code == 200, r.text
        return [t for t in r.json()["transfers"] if t["transfer_id"] in transfer_ids]

    async def webhooks(self, transfer_id: str) -> list[dict[str, Any]]:
        r = await self.client.get("/_sandbox/payout-webhooks", params={"transfer_id": transfer_id})
        assert r.status_code == 200, r.text
        return list(r.json() if isinstance(r.json(), list) else r.json()["deliveries"])
