"""Usage debt: what an overdraft meter left unpaid, and its repayment.

A wallet never goes negative (CHECK constraints of migration 0001), so an event rated above
the wallet's available credits under the `overdraft` policy debits what is there and owes
the rest — a memo kept in `usage_debts`, per wallet and meter, outside the ledger: the
credits were never issued, so no journal can record them until they are paid. The meter's
price version bounds what may be owed (`overdraft_limit_credits`); an event that would go
beyond it is rejected whole.

Repayment: whenever credits arrive in the wallet (`payment.credited`, or
`wallet.credits_available` for credits made available another way: a fraud review's
release, a hold released, a grant; both consumed on `wallet.credit` by `consumers.py`),
and at the start of every usage batch for its wallets,
the wallet's available credits repay its debts, oldest meter name first, each repayment a
platform debit through `consume_credits_many` keyed `usage-debt:<repayment id>`. The id is
derived from (wallet, meter, credits repaid before it), and the wallet's row lock is held,
so two deliveries of one credit can never repay the same debt twice: the second finds it
already paid (or a new key for a later, real debt).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.usage import repository as repo
from commdesk_billing.modules.usage.model import Debt
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.debits import Debit

log = structlog.get_logger(__name__)

_NAMESPACE = uuid.UUID("0c5f3f3e-8a51-5d55-9a63-7b1c1e0a4b15")


@dataclass(frozen=True)
class Repayment:
    id: uuid.UUID
    wallet_id: uuid.UUID
    meter: str
    repaid_before: int
    credits: int
    cause: str

    def debit(self) -> Debit:
        return Debit(
            wallet_id=self.wallet_id,
            credits=self.credits,
            idempotency_key=f"usage-debt:{self.id}",
            reason=f"usage debt repaid ({self.meter})",
            source_id=self.meter,
            metadata={"usage_debt_repayment": str(self.id), "cause": self.cause},
        )


def repayment_id(wallet_id: uuid.UUID, meter: str, repaid_before: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{wallet_id}:{meter}:{repaid_before}")


def plan(available: Mapping[uuid.UUID, int], debts: Sequence[Debt], cause: str) -> list[Repayment]:
    """Repay `debts` from each wallet's `available` credits, in the order given."""
    left = dict(available)
    planned: list[Repayment] = []
    for d in debts:
        pay = min(d.outstanding, left.get(d.wallet_id, 0))
        if pay <= 0:
            continue
        left[d.wallet_id] -= pay
        planned.append(
            Repayment(
                repayment_id(d.wallet_id, d.meter, d.repaid_credits),
                d.wallet_id,
                d.meter,
                d.repaid_credits,
                pay,
                cause,
            )
        )
    return planned


async def record(conn: AsyncConnection, repayments: Sequence[Repayment]) -> None:
    """The repayments' rows and the debts they reduce (their debits are the caller's, in the
    same transaction)."""
    await repo.insert_repayments(
        conn,
        [(r.id, r.wallet_id, r.meter, r.repaid_before, r.credits, r.cause) for r in repayments],
    )
    repaid: dict[tuple[uuid.UUID, str], int] = {}
    for r in repayments:
        repaid[(r.wallet_id, r.meter)] = repaid.get((r.wallet_id, r.meter), 0) + r.credits
    await repo.repay_debts(conn, repaid)


async def clear(conn: AsyncConnection, wallet_id: uuid.UUID, cause: str) -> int:
    """Repay the wallet's usage debts from its available credits; the credits repaid.

    Called when credits arrive. Locks the wallet's row first (as every usage write does),
    so the debts and the balance read here cannot move before the repayment is written.
    """
    wallets = await ws.lock_wallets(conn, [wallet_id])
    if not wallets:
        return 0
    wallet = wallets[0]
    owed = [d for d in await repo.debts(conn, [wallet_id]) if d.outstanding > 0]
    if not owed:
        return 0
    repayments = plan({wallet.id: wallet.available_credits}, owed, cause)
    if not repayments:
        return 0
    outcomes = await ws.consume_credits_many(conn, [r.debit() for r in repayments])
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    await record(conn, repayments)
    repaid = sum(r.credits for r in repayments)
    log.info("usage.debt.repaid", wallet_id=str(wallet_id), credits=repaid, cause=cause)
    return repaid
