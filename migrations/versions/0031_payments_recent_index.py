"""An index for staff's list of everyone's payments, newest first.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07

`GET /v1/payments` for finance_admin, support and auditor lists every user's payments by
(created_at, id) descending with a keyset cursor (`payments.repository.list_filtered`).
`payments_user_recent` serves one user's list and `payments_status` a single status; with
no user named, this index lets each page start at its cursor and read only its rows instead
of sorting the whole table.

Built CONCURRENTLY, outside the migration's transaction: `payments` is written by every
order and status move, and a plain CREATE INDEX would hold those writes for the whole build.
"""

from __future__ import annotations

from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A build interrupted earlier leaves an INVALID index of this name: start again.
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS payments_recent")
        op.execute(
            "CREATE INDEX CONCURRENTLY payments_recent ON payments (created_at DESC, id DESC)"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS payments_recent")
