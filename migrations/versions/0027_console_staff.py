"""The finance console's own sign-in: staff accounts and their server-side sessions.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07

- `console_staff`: a person who may sign in to the console (`src/.../console/`), with the
  role the API's tokens would carry (finance_admin, support, auditor; other roles are kept
  so a misgranted account is refused a 403, not an error) and a stdlib scrypt hash of the
  password (`console/passwords.py`). Accounts are made by `commdesk-billing staff create`.
- `console_sessions`: one row per sign-in. The cookie carries a random token; only its
  SHA-256 is stored, so a read of this table signs no one in. Expiry (absolute), the last
  use (idle timeout) and revocation (sign-out, account disabled) are checked on each page.
- An index on the payment a ledger journal names (`metadata->>'payment_id'`): the
  console's payment page lists a payment's journals, which would otherwise read the whole
  ledger. Built CONCURRENTLY, outside the transaction (every posting writes that table).
"""

from __future__ import annotations

from alembic import op

from commdesk_billing.db.migrate import execute_script

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE console_staff (
            id            uuid PRIMARY KEY,
            email         text NOT NULL UNIQUE
                CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 190),
            role          text NOT NULL CHECK (length(role) <= 40),
            password_hash text NOT NULL CHECK (password_hash LIKE 'scrypt$%'),
            disabled_at   timestamptz,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE console_sessions (
            token_sha256  bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
            staff_id      uuid NOT NULL REFERENCES console_staff (id),
            created_at    timestamptz NOT NULL,
            last_seen_at  timestamptz NOT NULL,
            expires_at    timestamptz NOT NULL,
            revoked_at    timestamptz,
            ip            inet,
            user_agent    text CHECK (length(user_agent) <= 512)
        );
        CREATE INDEX console_sessions_staff ON console_sessions (staff_id, created_at DESC);
        CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
        """
    )
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ledger_journals_payment")
        op.execute(
            "CREATE INDEX CONCURRENTLY ledger_journals_payment"
            " ON ledger_journals ((metadata->>'payment_id'))"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ledger_journals_payment")
    execute_script(
        """
        DROP TABLE console_sessions;
        DROP TABLE console_staff;
        """
    )
