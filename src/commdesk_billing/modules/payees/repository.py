"""SQL for payees and their payout accounts.

Locks, in the order they are taken: an account change first takes the payee's
change lock (`serialize_changes`, an advisory lock only account changes take, held while
Cashfree verifies), then the account's (`serialize_account`, by its fingerprint), then the
payee's row (`lock_payee`, the lock a settlement takes through
`targets.lock_target`) just for the insert. Settlements never wait for Cashfree on an
account change, and never interleave with its insert.

The change holds its pooled connection (and the two advisory locks) through its Cashfree
calls: that is what makes "is it another payee's?" and the beneficiary clean-up sure. It is
bounded (`service.CASHFREE_BUDGET`) and account changes are rare, people's actions.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.payees.model import (
    Payee,
    PayeeKind,
    PayeeStatus,
    PayoutAccount,
    PayoutMethod,
    Verification,
)

_PAYEE_COLS = "id, kind, subject_id, display_name, status, created_by, created_at, updated_at"
_ACCOUNT_COLS = (
    "id, payee_id, version, method, account_holder, account_sealed, account_fingerprint, "
    "account_mask, ifsc, vpa, verification_status, name_match_result, name_match_min, "
    "name_match_score, name_at_bank, verification_ref, verification_detail, verified_at, "
    "beneficiary_id, payouts_blocked_until, cooling_off_s, created_by, created_at, "
    "superseded_at"
)
# The advisory-lock class of account changes (pg_advisory_xact_lock(int, int): its own key
# space, apart from the idempotency keys' one-bigint locks).
_CHANGE_LOCK_CLASS = 1_400_010
_ACCOUNT_LOCK_CLASS = 1_400_011


def _payee(row: Row[Any]) -> Payee:
    f = row._asdict()
    return Payee(**{**f, "kind": PayeeKind(f["kind"]), "status": PayeeStatus(f["status"])})


def _account(row: Row[Any]) -> PayoutAccount:
    f = row._asdict()
    return PayoutAccount(
        **{
            **f,
            "method": PayoutMethod(f["method"]),
            "verification_status": Verification(f["verification_status"]),
        }
    )


async def insert_payee(
    conn: AsyncConnection, *, kind: PayeeKind, subject_id: str, display_name: str, by: str
) -> Payee | None:
    """None when the community or partner is a payee already (UNIQUE kind + subject)."""
    row = (
        await conn.execute(
            sql(f"""
            INSERT INTO payees (id, kind, subject_id, display_name, status, created_by)
            VALUES (:id, :kind, :subject, :name, 'active', :by)
            ON CONFLICT (kind, subject_id) DO NOTHING
            RETURNING {_PAYEE_COLS}"""),
            {
                "id": uuid.uuid4(),
                "kind": kind.value,
                "subject": subject_id,
                "name": display_name,
                "by": by,
            },
        )
    ).first()
    return _payee(row) if row else None


async def get_payee(conn: AsyncConnection, payee_id: uuid.UUID) -> Payee | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_PAYEE_COLS} FROM payees WHERE id = :id"), {"id": payee_id}
        )
    ).first()
    return _payee(row) if row else None


async def lock_payee(conn: AsyncConnection, payee_id: uuid.UUID) -> Payee | None:
    """The payee's row, locked as `targets.lock_target` locks it."""
    row = (
        await conn.execute(
            sql(f"SELECT {_PAYEE_COLS} FROM payees WHERE id = :id FOR UPDATE"), {"id": payee_id}
        )
    ).first()
    return _payee(row) if row else None


async def list_payees(
    conn: AsyncConnection,
    *,
    kind: PayeeKind | None,
    subject_id: str | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Payee]:
    """Newest first by (created_at, id); `before` is the last row of the previous page."""
    rows = await conn.execute(
        sql(f"""
        SELECT {_PAYEE_COLS} FROM payees
         WHERE (CAST(:kind AS text) IS NULL OR kind = :kind)
           AND (CAST(:subject AS text) IS NULL OR subject_id = :subject)
           AND (CAST(:at AS timestamptz) IS NULL
                OR (created_at, id) < (CAST(:at AS timestamptz), CAST(:rid AS uuid)))
         ORDER BY created_at DESC, id DESC
         LIMIT :n"""),
        {
            "kind": kind.value if kind else None,
            "subject": subject_id,
            "at": before[0] if before else None,
            "rid": before[1] if before else None,
            "n": limit,
        },
    )
    return [_payee(r) for r in rows]


async def set_status(conn: AsyncConnection, payee_id: uuid.UUID, status: PayeeStatus) -> Payee:
    """The payee with its new status (its row is locked: a settlement of it waits, or is
    waited for)."""
    row = (
        await conn.execute(
            sql(f"""
            UPDATE payees SET status = :status, updated_at = now() WHERE id = :id
            RETURNING {_PAYEE_COLS}"""),
            {"id": payee_id, "status": status.value},
        )
    ).one()
    return _payee(row)


# --- payout accounts --------------------------------------------------------------------------


async def serialize_changes(conn: AsyncConnection, payee_id: uuid.UUID) -> None:
    """One account change of a payee at a time, until this transaction ends: the next one
    waits (bounded by the statement timeout) and then sees this one's version."""
    await conn.execute(
        sql("SELECT pg_advisory_xact_lock(:cls, hashtext(:payee))"),
        {"cls": _CHANGE_LOCK_CLASS, "payee": str(payee_id)},
    )


async def serialize_account(conn: AsyncConnection, fingerprint: str) -> None:
    """One change towards a given account at a time, whichever payee makes it (taken after
    the payee's change lock): "is it another payee's?" is then answered for sure."""
    await conn.execute(
        sql("SELECT pg_advisory_xact_lock(:cls, hashtext(:f))"),
        {"cls": _ACCOUNT_LOCK_CLASS, "f": fingerprint},
    )


async def current_account(conn: AsyncConnection, payee_id: uuid.UUID) -> PayoutAccount | None:
    row = (
        await conn.execute(
            sql(f"""
            SELECT {_ACCOUNT_COLS} FROM payout_accounts
             WHERE payee_id = :p AND superseded_at IS NULL"""),
            {"p": payee_id},
        )
    ).first()
    return _account(row) if row else None


async def history(conn: AsyncConnection, payee_id: uuid.UUID) -> list[PayoutAccount]:
    """Every version, the newest first."""
    rows = await conn.execute(
        sql(f"""
        SELECT {_ACCOUNT_COLS} FROM payout_accounts WHERE payee_id = :p
         ORDER BY version DESC"""),
        {"p": payee_id},
    )
    return [_account(r) for r in rows]


async def fingerprint_elsewhere(
    conn: AsyncConnection, fingerprint: str, payee_id: uuid.UUID
) -> bool:
    """Is this account another payee's current, verified payout account? A failed attempt
    holds nothing: it never blocks the account's real holder."""
    row = (
        await conn.execute(
            sql("""
            SELECT 1 FROM payout_accounts
             WHERE account_fingerprint = :f AND payee_id <> :p AND superseded_at IS NULL
               AND verification_status = 'verified'
             LIMIT 1"""),
            {"f": fingerprint, "p": payee_id},
        )
    ).first()
    return row is not None


async def beneficiary_recorded(conn: AsyncConnection, beneficiary_id: str) -> bool:
    """Does any version name this beneficiary?"""
    row = (
        await conn.execute(
            sql("SELECT 1 FROM payout_accounts WHERE beneficiary_id = :b LIMIT 1"),
            {"b": beneficiary_id},
        )
    ).first()
    return row is not None


async def own_beneficiary(
    conn: AsyncConnection, payee_id: uuid.UUID, fingerprint: str
) -> str | None:
    """The beneficiary this payee's latest version of this account names, if any (the
    current version's when it is this account)."""
    row = (
        await conn.execute(
            sql("""
            SELECT beneficiary_id FROM payout_accounts
             WHERE payee_id = :p AND account_fingerprint = :f AND beneficiary_id IS NOT NULL
             ORDER BY version DESC LIMIT 1"""),
            {"p": payee_id, "f": fingerprint},
        )
    ).first()
    return str(row.beneficiary_id) if row else None


async def beneficiaries_of(conn: AsyncConnection, fingerprint: str) -> list[tuple[str, bool]]:
    """The Cashfree beneficiaries recorded for this account (any payee's, any version), each
    with whether a current version (of any account) names it."""
    rows = await conn.execute(
        sql("""
        SELECT b.beneficiary_id,
               EXISTS (SELECT 1 FROM payout_accounts c
                        WHERE c.beneficiary_id = b.beneficiary_id
                          AND c.superseded_at IS NULL) AS current
          FROM (SELECT DISTINCT beneficiary_id FROM payout_accounts
                 WHERE account_fingerprint = :f AND beneficiary_id IS NOT NULL) b
         ORDER BY b.beneficiary_id"""),
        {"f": fingerprint},
    )
    return [(str(r.beneficiary_id), bool(r.current)) for r in rows]


async def insert_account(conn: AsyncConnection, account: PayoutAccount) -> None:
    """The new current version; the one it replaces superseded at its creation, in the
    caller's transaction (the partial unique index keeps one current per payee)."""
    await conn.execute(
        sql("""
        UPDATE payout_accounts SET superseded_at = :at
         WHERE payee_id = :p AND superseded_at IS NULL"""),
        {"p": account.payee_id, "at": account.created_at},
    )
    cols = _ACCOUNT_COLS.split(", ")
    values = {c: getattr(account, c) for c in cols}
    values["method"] = account.method.value
    values["verification_status"] = account.verification_status.value
    await conn.execute(
        sql(
            f"INSERT INTO payout_accounts ({_ACCOUNT_COLS}) "
            f"VALUES ({', '.join(':' + c for c in cols)})"
        ),
        values,
    )


async def ever_verified(conn: AsyncConnection, payee_id: uuid.UUID) -> bool:
    row = (
        await conn.execute(
            sql("""
            SELECT 1 FROM payout_accounts
             WHERE payee_id = :p AND verification_status = 'verified' LIMIT 1"""),
            {"p": payee_id},
        )
    ).first()
    return row is not None


async def latest_version(conn: AsyncConnection, payee_id: uuid.UUID) -> int:
    return int(
        (
            await conn.execute(
                sql("SELECT coalesce(max(version), 0) FROM payout_accounts WHERE payee_id = :p"),
                {"p": payee_id},
            )
        ).scalar_one()
    )
