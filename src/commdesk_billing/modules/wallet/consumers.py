"""Queue handlers for `wallet.credit` and `wallet.debit`: grants and debits that other
CommDesk services send as messages. Idempotent by message id (the inbox) and by the
operation's key (the statement line), so a message and an HTTP call carrying the same
operation key cannot both apply."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, TypeVar

from pydantic import (
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.debits import Debit
from commdesk_billing.modules.wallet.model import LotSource
from commdesk_billing.modules.wallet.schemas import Metadata
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.runtime import PermanentError
from commdesk_billing.security.text import StrictInput
from commdesk_billing.security.timestamps import Timestamp

Credits = Annotated[StrictInt, Field(ge=1, le=10**13)]
Text = Annotated[StrictStr, Field(min_length=1, max_length=200)]


class _Payload(StrictInput):
    pass


P = TypeVar("P", bound=_Payload)


class DebitPayload(_Payload):
    wallet_id: uuid.UUID
    credits: Credits
    reason: Text
    idempotency_key: Text | None = None
    source_id: Text | None = None
    metadata: Metadata | None = None


class CreditPayload(_Payload):
    wallet_id: uuid.UUID
    credits: Credits
    source: Literal["purchase", "bonus", "promotional"]
    reason: Text
    idempotency_key: Text | None = None
    # A message cannot bring money in: credits with a cost basis are granted only where the
    # money behind them is booked in the same transaction (payments/crediting.py), or the
    # lots' basis and deferred revenue would part (DESIGN §10). Kept as fields so that a
    # producer sending them gets this reason in the dead-letter queue, not "extra field".
    paid_paise: Annotated[StrictInt, Field(ge=0, le=0)] = 0
    taxable_paise: Annotated[StrictInt, Field(ge=0, le=0)] = 0
    expires_at: Timestamp | None = None
    source_ref: Text | None = None


def _parse(model: type[P], envelope: Envelope) -> P:
    try:
        return model.model_validate(envelope.payload)
    except ValidationError as exc:
        raise PermanentError(f"{envelope.type} payload is not valid: {exc.errors()[:3]}") from exc


def operation_key(envelope: Envelope, given: str | None) -> str:
    return f"queue:{given}" if given else f"queue:msg:{envelope.id}"


async def handle_debit(conn: AsyncConnection, envelope: Envelope) -> None:
    p = _parse(DebitPayload, envelope)
    await ws.consume_credits(
        conn,
        wallet_id=p.wallet_id,
        credits=p.credits,
        idempotency_key=operation_key(envelope, p.idempotency_key),
        reason=p.reason,
        source_id=p.source_id,
        metadata={**(p.metadata or {}), "message_id": str(envelope.id)},
    )


async def handle_credit(conn: AsyncConnection, envelope: Envelope) -> None:
    p = _parse(CreditPayload, envelope)
    expires: datetime | None = p.expires_at
    await ws.grant_credits(
        conn,
        wallet_id=p.wallet_id,
        credits=p.credits,
        source=LotSource(p.source),
        idempotency_key=operation_key(envelope, p.idempotency_key),
        reason=p.reason,
        paid_paise=p.paid_paise,
        taxable_paise=p.taxable_paise,
        expires_at=expires,
        source_ref=p.source_ref,
        metadata={"message_id": str(envelope.id)},
    )


async def handle_debits(conn: AsyncConnection, envelopes: list[Envelope]) -> list[Exception | None]:
    """Many `wallet.debit` messages in one transaction (`consume_credits_many`): three round
    trips for the whole batch. A refused debit is refused alone; the others still apply."""
    outcomes: list[Exception | None] = [None] * len(envelopes)
    debits: list[Debit] = []
    index: list[int] = []
    for i, envelope in enumerate(envelopes):
        try:
            p = _parse(DebitPayload, envelope)
        except PermanentError as exc:
            outcomes[i] = exc
            continue
        debits.append(
            Debit(
                wallet_id=p.wallet_id,
                credits=p.credits,
                idempotency_key=operation_key(envelope, p.idempotency_key),
                reason=p.reason,
                source_id=p.source_id,
                metadata={**(p.metadata or {}), "message_id": str(envelope.id)},
            )
        )
        index.append(i)
    if debits:
        results = await ws.consume_credits_many(conn, debits)
        for i, result in zip(index, results, strict=True):
            outcomes[i] = result.error
    return outcomes
