"""`ledger verify` incremental for wallets and lots too.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-07

- `ledger_verify_wallets`: per wallet, the row's figures as the last clean `ledger verify`
  verified them (statement and chain position, chain head, available and locked credits).
  An incremental run walks only the wallets with an entry after the checkpoint, from their
  verified statement line; every other wallet row must still say what was verified.
- `wallet_verify_lots`: per lot, the sums of its movements' credits and basis as verified.
  A lot's remaining credits and basis are checked as these plus its new movements, so no
  run reads a lot's old movements again.
- `ledger_verify_figures`: running totals a check carries from one run to the next (a total
  that is not one account's sum, e.g. what consumption recognized), as at the checkpoint.
- The checkpoint of 0032 is dropped: it has no wallet or lot records, so the next
  `ledger verify` is a full run that writes them.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE ledger_verify_wallets (
            wallet_id     uuid PRIMARY KEY,
            statement_seq bigint NOT NULL CHECK (statement_seq >= 0),
            available     bigint NOT NULL,
            locked        bigint NOT NULL,
            chain_seq     bigint NOT NULL CHECK (chain_seq >= 0),
            chain_head    bytea
        );

        CREATE TABLE wallet_verify_lots (
            lot_id        uuid PRIMARY KEY,
            credits_moved bigint NOT NULL,
            basis_moved   bigint NOT NULL
        );

        CREATE TABLE ledger_verify_figures (
            name  text PRIMARY KEY,
            value bigint NOT NULL
        );

        DELETE FROM ledger_verify_checkpoint;
        DELETE FROM ledger_verify_sums;
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP TABLE ledger_verify_figures, wallet_verify_lots, ledger_verify_wallets;
        -- 0032's incremental run never read these records: start it from a full run.
        DELETE FROM ledger_verify_checkpoint;
        DELETE FROM ledger_verify_sums;
        """
    )
