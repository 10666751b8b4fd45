"""SQL on `users`, the one table this module owns."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.users.model import User


async def ensure(
    conn: AsyncConnection, external_id: str, email: str | None, name: str | None
) -> uuid.UUID:
    # ON CONFLICT DO NOTHING waits for a concurrent first-use of the same subject to finish,
    # and the following SELECT (a new snapshot) then sees its row.
    await conn.execute(
        sql("""
        INSERT INTO users (id, external_id, email, name) VALUES (:id, :sub, :email, :name)
        ON CONFLICT (external_id) DO NOTHING"""),
        {"id": uuid.uuid4(), "sub": external_id, "email": email, "name": name},
    )
    user_id = await id_for(conn, external_id)
    assert user_id is not None  # written or waited for just above
    return user_id


async def id_for(conn: AsyncConnection, external_id: str) -> uuid.UUID | None:
    value = (
        await conn.execute(
            sql("SELECT id FROM users WHERE external_id = :sub"), {"sub": external_id}
        )
    ).scalar_one_or_none()
    return value if isinstance(value, uuid.UUID) else None


async def get(conn: AsyncConnection, user_id: uuid.UUID) -> User | None:
    row = (
        await conn.execute(
            sql("SELECT id, external_id, email, name, state_code FROM users WHERE id = :id"),
            {"id": user_id},
        )
    ).first()
    return None if row is None else User(**row._asdict())


async def subjects_of(conn: AsyncConnection, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await conn.execute(
        sql("SELECT id, external_id FROM users WHERE id = ANY(:ids)"), {"ids": user_ids}
    )
    return {r.id: r.external_id for r in rows}
