"""A ledger whose writes cost the same at any size, house balances from a roll-up, and
`ledger verify` checkpoints.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07

- `ledger_entries_check()` (the balanced-journal trigger) is planned with sequential scans,
  hash joins and merge joins off. Its table reads are then index probes, one per journal and
  one per account of the statement's own rows, whatever the planner's statistics say: with
  stale statistics the old `journal_id IN (SELECT … FROM new_rows)` was planned as a walk of
  the whole journal index (seconds per statement at a million entries). What it checks is
  unchanged: every journal the statement touched, all of its legs, sums to 0 per ledger.
- `ledger_rollups`: per account that is not a wallet's (house, community, partner …), the
  signed sum of its legs up to the last seal's `last_entry_id`. The sealer updates it in the
  transaction that writes the seal block, so a balance is the roll-up plus the unsealed tail
  (an index range over `(account_id, id)`), never a sum over all of its legs. A row per
  account, written only by the one sealer (advisory lock): postings never touch it, so a hot
  house account gets no row lock on the write path (DESIGN §4, "hot accounts").
- `ledger_verify_checkpoint` and `ledger_verify_sums`: how far `ledger verify` has walked
  (an entry id that the seals cover, the seal block there and its hash) and every account's
  sum of legs up to that id as verified. An incremental verify walks only what is after it.
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE OR REPLACE FUNCTION ledger_entries_check() RETURNS trigger LANGUAGE plpgsql
        SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
        SET enable_indexscan = on SET enable_nestloop = on
        AS $$
        DECLARE
            bad record;
        BEGIN
            SELECT n.id, n.account_id, n.ledger INTO bad
              FROM new_rows n LEFT JOIN ledger_accounts a ON a.id = n.account_id
             WHERE a.id IS NULL OR a.ledger <> n.ledger
                OR a.wallet_id IS DISTINCT FROM n.wallet_id
             LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'ledger entry for account % on ledger % names no such account, '
                    'the wrong ledger or the wrong wallet', bad.account_id, bad.ledger
                    USING ERRCODE = 'foreign_key_violation';
            END IF;

            -- A correlated subquery per journal of this statement: it is never flattened into
            -- a join, so each is an equality probe of ledger_entries_journal. All of a
            -- journal's legs are summed (not only the new ones): a leg added later by another
            -- statement can never unbalance a journal that was balanced.
            SELECT t.journal_id, t.ledger, t.total INTO bad
              FROM (SELECT j.journal_id, j.ledger,
                           (SELECT sum(e.amount) FROM ledger_entries e
                             WHERE e.journal_id = j.journal_id AND e.ledger = j.ledger) AS total
                      FROM (SELECT DISTINCT journal_id, ledger FROM new_rows) j) t
             WHERE t.total <> 0
             LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'journal % does not balance on ledger % (off by %)',
                    bad.journal_id, bad.ledger, bad.total
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$;

        CREATE TABLE ledger_rollups (
            account_id uuid PRIMARY KEY,
            ledger     text NOT NULL CHECK (ledger IN ('INR', 'CREDITS')),
            -- Signed like the legs (debit positive): the sum of the account's legs with
            -- id <= the last seal's last_entry_id.
            balance    bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        INSERT INTO ledger_rollups (account_id, ledger, balance)
        SELECT account_id, ledger, sum(amount) FROM ledger_entries
         WHERE wallet_id IS NULL
           AND id <= coalesce((SELECT last_entry_id FROM ledger_seals
                                ORDER BY block_no DESC LIMIT 1), 0)
         GROUP BY account_id, ledger;

        CREATE TABLE ledger_verify_checkpoint (
            id               smallint PRIMARY KEY CHECK (id = 1),
            -- Every entry with id <= this was walked (chains, seals, journals, sums).
            through_entry_id bigint NOT NULL CHECK (through_entry_id >= 0),
            block_no         bigint NOT NULL CHECK (block_no >= 0),
            seal_hash        bytea,
            verified_at      timestamptz NOT NULL,
            full_at          timestamptz
        );

        CREATE TABLE ledger_verify_sums (
            account_id uuid PRIMARY KEY,
            balance    bigint NOT NULL
        );
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP TABLE ledger_verify_sums, ledger_verify_checkpoint, ledger_rollups;
        CREATE OR REPLACE FUNCTION ledger_entries_check() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            bad record;
        BEGIN
            SELECT n.id, n.account_id, n.ledger INTO bad
              FROM new_rows n LEFT JOIN ledger_accounts a ON a.id = n.account_id
             WHERE a.id IS NULL OR a.ledger <> n.ledger
                OR a.wallet_id IS DISTINCT FROM n.wallet_id
             LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'ledger entry for account % on ledger % names no such account, '
                    'the wrong ledger or the wrong wallet', bad.account_id, bad.ledger
                    USING ERRCODE = 'foreign_key_violation';
            END IF;

            SELECT e.journal_id, e.ledger, sum(e.amount) AS total INTO bad
              FROM ledger_entries e
             WHERE e.journal_id IN (SELECT DISTINCT journal_id FROM new_rows)
             GROUP BY e.journal_id, e.ledger
            HAVING sum(e.amount) <> 0
             LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'journal % does not balance on ledger % (off by %)',
                    bad.journal_id, bad.ledger, bad.total
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$;
        """
    )
