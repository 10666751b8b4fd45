"""SQL of the console's own tables: staff accounts and their sessions (`tables.py`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql


@dataclass(frozen=True)
class Staff:
    id: uuid.UUID
    email: str
    role: str
    password_hash: str
    disabled_at: datetime | None


@dataclass(frozen=True)
class SessionRow:
    staff: Staff
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


_STAFF = "s.id, s.email, s.role, s.password_hash, s.disabled_at"


async def insert_staff(
    conn: AsyncConnection, *, email: str, role: str, password_hash: str
) -> uuid.UUID | None:
    """None when an account has this email already."""
    row = (
        await conn.execute(
            sql("""
            INSERT INTO console_staff (id, email, role, password_hash)
            VALUES (:id, :e, :r, :h) ON CONFLICT (email) DO NOTHING RETURNING id"""),
            {"id": uuid.uuid4(), "e": email, "r": role, "h": password_hash},
        )
    ).first()
    return None if row is None else row[0]


async def set_password(conn: AsyncConnection, staff_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute(
        sql("""UPDATE console_staff SET password_hash = :h, updated_at = now()
                WHERE id = :id"""),
        {"id": staff_id, "h": password_hash},
    )


async def set_disabled(conn: AsyncConnection, email: str, disabled: bool) -> uuid.UUID | None:
    row = (
        await conn.execute(
            sql("""
            UPDATE console_staff
               SET disabled_at = CASE WHEN :d THEN coalesce(disabled_at, now()) END,
                   updated_at = now()
             WHERE email = :e RETURNING id"""),
            {"e": email, "d": disabled},
        )
    ).first()
    return None if row is None else row[0]


async def staff_by_email(conn: AsyncConnection, email: str) -> Staff | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_STAFF} FROM console_staff s WHERE s.email = :e"), {"e": email}
        )
    ).first()
    return None if row is None else Staff(*row)


async def insert_session(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(
        sql("""
        INSERT INTO console_sessions (token_sha256, staff_id, created_at, last_seen_at,
                                      expires_at, ip, user_agent)
        VALUES (:t, :staff, :at, :at, :exp, CAST(:ip AS inet), :ua)"""),
        values,
    )


async def session(conn: AsyncConnection, token_sha256: bytes) -> SessionRow | None:
    row = (
        await conn.execute(
            sql(f"""
            SELECT {_STAFF}, c.created_at, c.last_seen_at, c.expires_at, c.revoked_at
              FROM console_sessions c JOIN console_staff s ON s.id = c.staff_id
             WHERE c.token_sha256 = :t"""),
            {"t": token_sha256},
        )
    ).first()
    if row is None:
        return None
    return SessionRow(Staff(*row[:5]), row[5], row[6], row[7], row[8])


async def touch(conn: AsyncConnection, token_sha256: bytes, at: datetime) -> None:
    await conn.execute(
        sql("UPDATE console_sessions SET last_seen_at = :at WHERE token_sha256 = :t"),
        {"t": token_sha256, "at": at},
    )


async def revoke(conn: AsyncConnection, token_sha256: bytes, at: datetime) -> bool:
    result = await conn.execute(
        sql("""UPDATE console_sessions SET revoked_at = :at
                WHERE token_sha256 = :t AND revoked_at IS NULL"""),
        {"t": token_sha256, "at": at},
    )
    return result.rowcount == 1


async def revoke_all(conn: AsyncConnection, staff_id: uuid.UUID, at: datetime) -> int:
    result = await conn.execute(
        sql("""UPDATE console_sessions SET revoked_at = :at
                WHERE staff_id = :s AND revoked_at IS NULL AND expires_at > :at"""),
        {"s": staff_id, "at": at},
    )
    return int(result.rowcount)
