"""Users: created on first use from a JWT subject; other modules ask here, never the table."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.users import repository as repo
from commdesk_billing.modules.users.model import User


async def ensure_user(
    conn: AsyncConnection, external_id: str, *, email: str | None = None, name: str | None = None
) -> uuid.UUID:
    """The user of this subject, created if it is their first visit (race-safe)."""
    return await repo.ensure(conn, external_id, email, name)


async def user_id_for(conn: AsyncConnection, external_id: str) -> uuid.UUID | None:
    return await repo.id_for(conn, external_id)


async def get_user(conn: AsyncConnection, user_id: uuid.UUID) -> User:
    user = await repo.get(conn, user_id)
    if user is None:
        raise LookupError(f"user {user_id} does not exist")
    return user


async def is_subject(conn: AsyncConnection, user_id: uuid.UUID, subject: str) -> bool:
    """Whether this user is the JWT subject `subject`."""
    user = await repo.get(conn, user_id)
    return user is not None and user.external_id == subject


async def subjects_of(conn: AsyncConnection, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The JWT subject of each of these users, in one read (a staff CSV of many buyers)."""
    return await repo.subjects_of(conn, list(set(user_ids)))
