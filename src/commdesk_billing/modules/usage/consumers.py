"""Queue handler: credits arrived in a wallet, so its usage debt is repaid.

Two events say so, both routed to `wallet.credit` for this handler:
  - `payment.credited` (announced by `payments/crediting.py` when a purchase's credits are
    granted, and so for every recharge that goes through the verified crediting path);
  - `wallet.credits_available` (announced by the wallet's other ways of making credits
    available, `wallet/available.py`: a fraud review's release of held credits, a grant),
    naming its own cause.
It runs in the consumer's transaction with the inbox row; the repayment is idempotent by
its own keys (`debts.clear`), so a redelivery repays nothing twice.

Both routes have a condition (`owes_on_credit`): the announcing transaction writes the
message only when the wallet owes usage debt, so an ordinary purchase or release costs this
queue nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, StrictStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.usage import debts
from commdesk_billing.modules.usage import repository as repo
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError
from commdesk_billing.security.text import StrictInput


class _Credited(StrictInput):
    model_config = {"extra": "ignore"}  # the event carries the payment's figures too

    wallet_id: uuid.UUID
    # `payment.credited` names its payment; `wallet.credits_available` its cause.
    payment_id: uuid.UUID | None = None
    cause: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None


async def repay_debts(conn: AsyncConnection, envelope: Envelope) -> None:
    try:
        p = _Credited.model_validate(envelope.payload)
    except ValidationError as exc:
        raise PermanentError(f"{envelope.type} payload is not valid: {exc.errors()[:3]}") from exc
    if p.cause is not None:
        cause = p.cause
    elif p.payment_id is not None:
        cause = f"payment:{p.payment_id}"
    else:
        raise PermanentError(f"{envelope.type} payload names neither a payment nor a cause")
    await debts.clear(conn, p.wallet_id, cause)


async def owes_on_credit(conn: AsyncConnection, payload: Mapping[str, Any]) -> bool:
    """The condition of the `payment.credited` and `wallet.credits_available` routes,
    asked in the announcing transaction: whether the wallet owes usage debt, so
    `repay_debts` has something to do.

    Exact only under the wallet's row lock, which the crediting holds when it granted
    credits (`credits` above 0), as does every operation that announces
    `wallet.credits_available` (it made them available): a debt is written only under that
    lock (`metering`), so one committed before the operation took the lock is read here,
    and one written after this commits finds these credits already in the wallet (the
    overdraft debits them first; a debt is what is left over). An event that granted no
    credits (a payment handed over: the wallet not locked) or does not name its wallet is
    sent, as every one was."""
    try:
        credits = int(payload["credits"])
        wallet_id = uuid.UUID(str(payload["wallet_id"]))
    except (KeyError, TypeError, ValueError):
        return True
    if credits <= 0:
        return True
    return await repo.owes(conn, wallet_id)
