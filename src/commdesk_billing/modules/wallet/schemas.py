"""Request and response bodies of the wallet API. Requests are strict: unknown fields,
strings for numbers, floats and booleans for credits are all refused."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)

from commdesk_billing.modules.wallet.model import Hold, HoldStatus, StatementLine, TxnType, Wallet
from commdesk_billing.security.text import StrictInput
from commdesk_billing.security.timestamps import Timestamp

Credits = Annotated[StrictInt, Field(ge=1, le=10**13, description="Whole credits, > 0")]
Reason = Annotated[StrictStr, Field(min_length=1, max_length=200)]
MetaValue = StrictStr | StrictInt | StrictBool | None
Metadata = Annotated[dict[Annotated[str, Field(max_length=64)], MetaValue], Field(max_length=20)]


class _Request(StrictInput):
    # Numbers and text are Strict* types field by field (no "5" for 5, no 5.0, no true);
    # the model itself stays lax so ISO 8601 strings still parse as datetimes.

    @field_validator("metadata", check_fields=False)
    @classmethod
    def _short_values(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for v in (value or {}).values():
            if isinstance(v, str) and len(v) > 500:
                raise ValueError("metadata values are limited to 500 characters")
        return value


class DebitRequest(_Request):
    credits: Credits
    reason: Reason
    source_id: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    metadata: Metadata | None = None


class GrantRequest(_Request):
    credits: Credits
    reason: Reason
    expires_at: Timestamp | None = Field(
        default=None, description="RFC 3339 with offset, in [2000-01-01, 2100-01-01) UTC"
    )
    metadata: Metadata | None = None


class HoldRequest(_Request):
    credits: Credits
    reason: Reason
    ttl_seconds: Annotated[StrictInt, Field(ge=1, le=90 * 86400)] | None = None
    metadata: Metadata | None = None


class CaptureRequest(_Request):
    credits: Credits | None = None
    reason: Reason | None = None
    metadata: Metadata | None = None


class ReleaseRequest(_Request):
    reason: Reason | None = None


class WalletOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0b6c2d1e-8f4a-4c3b-9a55-2f1f0c9e7a10",
                    "owner_type": "user",
                    "owner_id": "5e0d7c1a-3b2f-4d8e-a1c9-7f6e5d4c3b2a",
                    "available_credits": 1200,
                    "locked_credits": 100,
                    "pending_credits": 0,
                    "lifetime_purchased_credits": 1500,
                    "auto_recharge_enabled": False,
                    "auto_recharge_threshold": 0,
                    "created_at": "2026-12-01T10:00:00Z",
                    "updated_at": "2026-12-07T09:30:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    owner_type: str
    owner_id: uuid.UUID
    available_credits: int
    locked_credits: int
    pending_credits: int
    lifetime_purchased_credits: int
    auto_recharge_enabled: bool
    auto_recharge_threshold: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, w: Wallet) -> WalletOut:
        return cls(
            id=w.id,
            owner_type=w.owner_type,
            owner_id=w.owner_id,
            available_credits=w.available_credits,
            locked_credits=w.locked_credits,
            pending_credits=w.pending_credits,
            lifetime_purchased_credits=w.lifetime_purchased_credits,
            auto_recharge_enabled=w.auto_recharge_enabled,
            auto_recharge_threshold=w.auto_recharge_threshold,
            created_at=w.created_at,
            updated_at=w.updated_at,
        )


class TransactionOut(BaseModel):
    id: uuid.UUID
    wallet_id: uuid.UUID
    seq: int
    transaction_type: TxnType
    credits: int
    balance_before: int
    balance_after: int
    reason: str
    source_id: str | None
    metadata: dict[str, Any]
    hold_id: uuid.UUID | None
    lot_id: uuid.UUID | None
    journal_id: uuid.UUID
    created_at: datetime

    @classmethod
    def of(cls, t: StatementLine) -> TransactionOut:
        return cls(
            id=t.id,
            wallet_id=t.wallet_id,
            seq=t.seq,
            transaction_type=t.transaction_type.value,
            credits=t.credits,
            balance_before=t.balance_before,
            balance_after=t.balance_after,
            reason=t.source,
            source_id=t.source_id,
            metadata=t.metadata,
            hold_id=t.hold_id,
            lot_id=t.lot_id,
            journal_id=t.journal_id,
            created_at=t.created_at,
        )


class HoldOut(BaseModel):
    id: uuid.UUID
    wallet_id: uuid.UUID
    credits: int
    captured_credits: int
    released_credits: int
    status: HoldStatus
    reason: str
    expires_at: datetime
    created_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, h: Hold) -> HoldOut:
        return cls(
            id=h.id,
            wallet_id=h.wallet_id,
            credits=h.credits,
            captured_credits=h.captured_credits,
            released_credits=h.released_credits,
            status=h.status.value,
            reason=h.reason,
            expires_at=h.expires_at,
            created_at=h.created_at,
            closed_at=h.closed_at,
        )


class OperationOut(BaseModel):
    wallet: WalletOut
    transaction: TransactionOut
    hold: HoldOut | None = None


class TransactionPage(BaseModel):
    data: list[TransactionOut]
    next_cursor: str | None


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Raises ValueError for anything that is not a cursor this API handed out."""
    if len(cursor) > 64:
        raise ValueError("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("cursor is not valid") from exc
    prefix, _, number = raw.partition(":")
    if prefix != "seq" or not (number.isascii() and number.isdigit()) or len(number) > 18:
        raise ValueError("cursor is not valid")
    return int(number)


def operation_body(wallet: Wallet, line: StatementLine) -> dict[str, Any]:
    """`OperationOut` of an operation without a hold, as a dict of the same fields in the same
    order, for the debit route's hot path: `render` turns it into the bytes pydantic's JSON
    would be (tests/modules/wallet/test_http_debits.py holds the two together), at a fraction
    of the cost of building three models per answer."""
    return {
        "wallet": {
            "id": wallet.id,
            "owner_type": wallet.owner_type,
            "owner_id": wallet.owner_id,
            "available_credits": wallet.available_credits,
            "locked_credits": wallet.locked_credits,
            "pending_credits": wallet.pending_credits,
            "lifetime_purchased_credits": wallet.lifetime_purchased_credits,
            "auto_recharge_enabled": wallet.auto_recharge_enabled,
            "auto_recharge_threshold": wallet.auto_recharge_threshold,
            "created_at": wallet.created_at,
            "updated_at": wallet.updated_at,
        },
        "transaction": {
            "id": line.id,
            "wallet_id": line.wallet_id,
            "seq": line.seq,
            "transaction_type": line.transaction_type.value,
            "credits": line.credits,
            "balance_before": line.balance_before,
            "balance_after": line.balance_after,
            "reason": line.source,
            "source_id": line.source_id,
            "metadata": line.metadata,
            "hold_id": line.hold_id,
            "lot_id": line.lot_id,
            "journal_id": line.journal_id,
            "created_at": line.created_at,
        },
        "hold": None,
    }


def render(body: dict[str, Any]) -> bytes:
    """JSON as the API's responses are (compact, UTF-8 as it is), with UUIDs and datetimes
    written as pydantic writes them (UTC as `Z`)."""
    try:
        return orjson.dumps(body, default=_text, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        # orjson writes integers of at most 64 bits, and a debit's metadata may carry any
        # integer (the statement keeps it in jsonb): such a body is written the way the
        # JSON responses write it, the same bytes orjson writes for everything else.
        return json.dumps(
            _plain(body), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()


def _text(value: object) -> str:
    # asyncpg's own UUID type (a uuid.UUID subclass, which orjson does not take as one).
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _plain(value: Any) -> Any:
    """`value` with its UUIDs and datetimes as the strings `render` writes for them."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return orjson.dumps(value, option=orjson.OPT_UTC_Z)[1:-1].decode()
    return value
