"""Hash chain and seal arithmetic, shared by the writer, the sealer and the verifier.

An entry's hash covers the fields that carry money and position; changing any of them, or
removing or reordering entries, breaks every later link of its chain.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(ts: datetime) -> int:
    # Integer arithmetic on purpose: float timestamps lose microseconds.
    return (ts - _EPOCH) // timedelta(microseconds=1)


def entry_hash(
    *,
    prev: bytes | None,
    wallet_id: uuid.UUID,
    seq: int,
    journal_id: uuid.UUID,
    account_id: uuid.UUID,
    ledger: str,
    amount: int,
    created_at: datetime,
) -> bytes:
    body = f"{wallet_id}|{seq}|{journal_id}|{account_id}|{ledger}|{amount}|{micros(created_at)}"
    return hashlib.sha256((prev or b"") + body.encode()).digest()


def seal_line(
    *,
    entry_id: int,
    journal_id: uuid.UUID,
    account_id: uuid.UUID,
    ledger: str,
    amount: int,
    wallet_id: uuid.UUID | None,
    chain_seq: int | None,
    entry_hash_: bytes | None,
    created_at: datetime,
) -> bytes:
    return (
        f"{entry_id}|{journal_id}|{account_id}|{ledger}|{amount}|{wallet_id or ''}|"
        f"{chain_seq if chain_seq is not None else ''}|"
        f"{entry_hash_.hex() if entry_hash_ else ''}|{micros(created_at)}\n"
    ).encode()


def seal_hash(
    *,
    prev: bytes | None,
    block_no: int,
    first_entry_id: int,
    last_entry_id: int,
    entry_count: int,
    digest: bytes,
) -> bytes:
    body = f"{block_no}|{first_entry_id}|{last_entry_id}|{entry_count}|{digest.hex()}"
    return hashlib.sha256((prev or b"") + body.encode()).digest()
