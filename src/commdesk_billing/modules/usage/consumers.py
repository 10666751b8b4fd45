"""Queue handler: credits arrived in a wallet, so its usage debt is repaid.

`payment.credited` (announced by `payments/crediting.py` when a purchase's credits are
granted, and so for every recharge that goes through the verified crediting path) is routed
to `wallet.credit` for this handler. It runs in the consumer's transaction with the inbox
row; the repayment is idempotent by its own keys (`debts.clear`), so a redelivery repays
nothing twice.
"""

from __future__ import annotations

import uuid

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.usage import debts
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError
from commdesk_billing.security.text import StrictInput


class _Credited(StrictInput):
    model_config = {"extra": "ignore"}  # the event carries the payment's figures too

    payment_id: uuid.UUID
    wallet_id: uuid.UUID


async def repay_debts(conn: AsyncConnection, envelope: Envelope) -> None:
    try:
        p = _Credited.model_validate(envelope.payload)
    except ValidationError as exc:
        raise PermanentError(f"{envelope.type} payload is not valid: {exc.errors()[:3]}") from exc
    await debts.clear(conn, p.wallet_id, f"payment:{p.payment_id}")
