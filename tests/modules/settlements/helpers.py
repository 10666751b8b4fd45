"""What the settlements tests share: a verified payee (a partner, paid by UPI, with its
Cashfree beneficiary at the sandbox), money it earned through real journals (partner shares
posted by the partners' own entry point), waiting for a settlement's status, the sandbox's
Payouts controls."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.payout_models import mask
from commdesk_billing.gateway.payouts import CashfreePayoutsClient
from commdesk_billing.modules.partners import service as partners
from commdesk_billing.modules.users import service as users
from commdesk_billing.security.sealed import KeyRing

# Test keys only: account numbers of Cashfree's sandbox, sealed as payees seal them.
_RING = KeyRing(keys={"test1": os.urandom(32)}, current="test1", fingerprint_key=os.urandom(32))


@dataclass(frozen=True)
class MadePayee:
    id: uuid.UUID
    partner_id: str
    beneficiary_id: str
    vpa: str
    kind: str = "partner"

    @property
    def payable_code(self) -> str:
        return f"{self.kind}:{self.partner_id}:payable"


def payouts_client(settings: Settings) -> CashfreePayoutsClient:
    assert settings.cashfree_payout_client_id and settings.cashfree_payout_client_secret
    return CashfreePayoutsClient(
        base_url=settings.cashfree_payout_base_url,
        verification_base_url=settings.cashfree_verification_base_url,
        client_id=settings.cashfree_payout_client_id,
        client_secret=settings.cashfree_payout_client_secret.get_secret_value(),
        timeout_s=5.0,
    )


async def make_payee(
    engine: AsyncEngine,
    settings: Settings | None = None,
    *,
    blocked_until: datetime | None = None,
    beneficiary: bool = True,
    community_id: str | None = None,
    bank: tuple[str, str] | None = None,
) -> MadePayee:
    """A partner (or community) payee with a verified current UPI account (or `bank`, a
    Cashfree test account and IFSC, sealed under test keys), its beneficiary added at the
    sandbox (when `settings` are given) through our Payouts client."""
    partner_id = community_id or f"p-{uuid.uuid4().hex[:12]}"
    kind = "community" if community_id else "partner"
    payee_id = uuid.uuid4()
    bene = f"bene_{uuid.uuid4().hex[:20]}"
    vpa = f"payee{uuid.uuid4().hex[:10]}@upi"
    if settings is not None and beneficiary:
        client = payouts_client(settings)
        try:
            if bank is None:
                await client.add_beneficiary(beneficiary_id=bene, name="Priya Sharma", vpa=vpa)
            else:
                await client.add_beneficiary(
                    beneficiary_id=bene,
                    name="Priya Sharma",
                    bank_account_number=bank[0],
                    bank_ifsc=bank[1],
                )
        finally:
            await client.aclose()
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> None:
        if kind == "partner":
            await partners.create_partner(
                conn, partner_id=partner_id, name="Referrer", share_bps=5000, reason="t", by="t"
            )
        await conn.execute(
            text("""
            INSERT INTO payees (id, kind, subject_id, display_name, status, created_by)
            VALUES (:id, :kind, :s, 'Payee', 'active', 'test')"""),
            {"id": payee_id, "s": partner_id, "kind": kind},
        )
        sealed = fingerprint = ifsc = None
        if bank is not None:
            sealed = _RING.seal(bank[0], owner=str(payee_id))
            fingerprint, ifsc = _RING.fingerprint(bank[0]), bank[1]
        await conn.execute(
            text("""
            INSERT INTO payout_accounts (id, payee_id, version, method, account_holder,
                account_sealed, account_fingerprint, account_mask, ifsc, vpa,
                verification_status, verified_at, beneficiary_id, payouts_blocked_until,
                created_by)
            VALUES (:id, :p, 1, :method, 'Priya Sharma', :sealed, :fp, :mask, :ifsc, :vpa,
                    'verified', :at, :b, :until, 'test')"""),
            {
                "id": uuid.uuid4(),
                "p": payee_id,
                "method": "upi" if bank is None else "bank",
                "sealed": sealed,
                "fp": fingerprint,
                "ifsc": ifsc,
                "mask": "XXXX@upi" if bank is None else mask(bank[0]),
                "vpa": vpa if bank is None else None,
                "at": now,
                "b": bene,
                "until": blocked_until or now - timedelta(days=1),
            },
        )

    await in_transaction(engine, work)
    return MadePayee(payee_id, partner_id, bene, vpa, kind)


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
