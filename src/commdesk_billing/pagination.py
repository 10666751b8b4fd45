"""Keyset cursors for lists ordered newest first by (time, id) (API conventions: lists are
cursor-paginated). A cursor is opaque to clients: base64url of `<kind>:<iso time>|<id>`,
where `kind` keeps one list's cursor from being replayed against another. A cursor's time
obeys the rule of every outside timestamp (`security/timestamps.py`): a forged one with an
absurd time (year 1 at +23:59) is a 422 `invalid_cursor`, never an overflow in the
database driver."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from commdesk_billing.errors import InvalidCursor
from commdesk_billing.security.timestamps import in_window


def encode_cursor(kind: str, at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{kind}:{at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, rest = raw.partition(":")
        at, _, row_id = rest.partition("|")
        if prefix != kind:
            raise ValueError("a cursor of another list")
        return in_window(datetime.fromisoformat(at)), uuid.UUID(row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor("cursor is not valid") from exc
