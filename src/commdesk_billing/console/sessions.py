"""Staff accounts and their sessions: sign-in, the session behind a cookie, sign-out.

The cookie carries a random 256-bit token; the database keeps only its SHA-256, so a copy
of the table (a backup, a replica) signs no one in. A session ends at its absolute expiry
(`console_session_ttl_s` after sign-in), after `console_idle_timeout_s` unused, at sign-out
(revoked), or when its account is disabled. Sign-ins, refusals and sign-outs are audited.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.console import passwords
from commdesk_billing.console import repository as repo
from commdesk_billing.console.repository import Staff
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.security import origin
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.roles import STAFF_READERS

_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[a-z0-9.-]{1,125}\.[a-z]{2,24}$")
EMAIL_MAX = 190
# Roles an account may be given: people (a token's `service` role is another program).
GRANTABLE = tuple(r.value for r in Role if r is not Role.service)
# How often a session's last use is written: not at every page (a write per click).
_TOUCH_EVERY = timedelta(seconds=60)


class InvalidEmail(ValueError):
    pass


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if len(email) > EMAIL_MAX or not _EMAIL.match(email):
        raise InvalidEmail("enter an email address (name@example.com)")
    return email


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def principal_of(staff: Staff) -> Principal:
    """How the modules see a console user: a principal with the account's role, named
    `console:<email>` (in refunds' `requested_by`, audit entries, idempotency scopes)."""
    return Principal(
        sub=f"console:{staff.email}", role=Role(staff.role), scopes=frozenset(), email=staff.email
    )


def may_open_console(staff: Staff) -> bool:
    return staff.role in {r.value for r in STAFF_READERS}


@dataclass(frozen=True)
class Current:
    staff: Staff
    principal: Principal
    token: str


async def create_staff(conn: AsyncConnection, email: str, role: str, password: str) -> uuid.UUID:
    """A new account (the CLI's `staff create`, as the operator); ValueError if refused."""
    if role not in GRANTABLE:
        raise ValueError(f"role must be one of: {', '.join(GRANTABLE)}")
    address = normalize_email(email)
    staff_id = await repo.insert_staff(
        conn, email=address, role=role, password_hash=passwords.hash_password(password)
    )
    if staff_id is None:
        raise ValueError(f"an account for {address} exists already")
    await audit.record(
        conn,
        None,
        action="console.staff.created",
        target_type="staff",
        target_id=address,
        after={"role": role},
    )
    return staff_id


async def set_disabled(conn: AsyncConnection, email: str, disabled: bool) -> None:
    """Disable (every session ends) or enable an account (the CLI, as the operator)."""
    address = normalize_email(email)
    staff_id = await repo.set_disabled(conn, address, disabled)
    if staff_id is None:
        raise ValueError(f"no account for {address}")
    ended = await repo.revoke_all(conn, staff_id, datetime.now(UTC)) if disabled else 0
    await audit.record(
        conn,
        None,
        action="console.staff.disabled" if disabled else "console.staff.enabled",
        target_type="staff",
        target_id=address,
        details={"sessions_ended": ended},
    )


async def set_password(conn: AsyncConnection, email: str, password: str) -> None:
    """A new password for an account (the CLI, as the operator); its sessions end."""
    address = normalize_email(email)
    staff = await repo.staff_by_email(conn, address)
    if staff is None:
        raise ValueError(f"no account for {address}")
    await repo.set_password(conn, staff.id, passwords.hash_password(password))
    ended = await repo.revoke_all(conn, staff.id, datetime.now(UTC))
    await audit.record(
        conn,
        None,
        action="console.staff.password_set",
        target_type="staff",
        target_id=address,
        details={"sessions_ended": ended},
    )


async def _refused(conn: AsyncConnection, email: str, why: str) -> None:
    # Nobody is signed in: the entry's actor says so (the address and agent are the origin's).
    here = origin.current() or origin.Origin(channel="http")
    anonymous = dataclasses.replace(here, actor="console:anonymous", role="anonymous")
    with origin.bound(anonymous):
        await audit.record(
            conn,
            None,
            action="console.sign_in.refused",
            target_type="staff",
            target_id=email,
            details={"why": why},
        )


async def sign_in(
    conn: AsyncConnection,
    settings: Settings,
    email: str,
    password: str,
    *,
    ip: str | None,
    user_agent: str | None,
) -> Current | None:
    """A new session for the account, or None (wrong email or password, or disabled: one
    answer for all, in about the same time). Audited either way."""
    staff = await repo.staff_by_email(conn, email)
    matches = passwords.verify(password, staff.password_hash if staff else passwords.DUMMY_HASH)
    if staff is None or not matches or staff.disabled_at is not None:
        why = "unknown" if staff is None else ("password" if not matches else "disabled")
        await _refused(conn, email, why)
        return None
    if passwords.needs_rehash(staff.password_hash):
        await repo.set_password(conn, staff.id, passwords.hash_password(password))
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    await repo.insert_session(
        conn,
        {
            "t": token_hash(token),
            "staff": staff.id,
            "at": now,
            "exp": now + timedelta(seconds=settings.console_session_ttl_s),
            "ip": ip,
            "ua": user_agent,
        },
    )
    principal = principal_of(staff)
    await audit.record(
        conn,
        principal,
        action="console.sign_in",
        target_type="staff",
        target_id=staff.email,
        details={
            "expires_at": (now + timedelta(seconds=settings.console_session_ttl_s)).isoformat()
        },
    )
    return Current(staff, principal, token)


async def current(conn: AsyncConnection, settings: Settings, token: str) -> Current | None:
    """The live session behind a cookie's token, or None (unknown, ended, or idle too long)."""
    if not 20 <= len(token) <= 100:
        return None
    key = token_hash(token)
    row = await repo.session(conn, key)
    now = datetime.now(UTC)
    if (
        row is None
        or row.revoked_at is not None
        or row.expires_at <= now
        or row.last_seen_at + timedelta(seconds=settings.console_idle_timeout_s) <= now
        or row.staff.disabled_at is not None
    ):
        return None
    if now - row.last_seen_at >= _TOUCH_EVERY:
        await repo.touch(conn, key, now)
    return Current(row.staff, principal_of(row.staff), token)


async def sign_out(conn: AsyncConnection, signed_in: Current) -> None:
    if await repo.revoke(conn, token_hash(signed_in.token), datetime.now(UTC)):
        await audit.record(
            conn,
            signed_in.principal,
            action="console.sign_out",
            target_type="staff",
            target_id=signed_in.staff.email,
        )
