"""Reconciliation findings: what the three reconcilers (internal, gateway, payouts) found, and
every change of a finding's state with who made it and why.

Revision ID: 0028
Revises: 0027 (main had 0032 on 0025 when this was merged; the lead renumbers)
Create Date: 2026-12-07

- `reconciliation_findings`: one row per mismatch, keyed on (source, kind, reference): the
  same mismatch seen by the next run updates `last_seen_at` / `seen_count` of its row, never
  makes a second one. Amounts are what we hold (`expected_paise`) and what the other side
  says (`actual_paise`), either absent when a side has no figure. `state` moves open →
  explained → resolved (or open → resolved); a resolved finding seen again is open again.
- `reconciliation_finding_transitions`: the audit trail of those moves, append-only (the
  database refuses UPDATE and DELETE): the actor (a person's subject, or `reconciler`), the
  actor's role and a note, on every transition including the opening one. No state changes
  without a row here (`modules/reconciliation/repository.py` writes both in one statement).
"""

from __future__ import annotations

from commdesk_billing.db.migrate import execute_script

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE reconciliation_findings (
            id              uuid PRIMARY KEY,
            source          text NOT NULL CHECK (source IN ('internal', 'gateway', 'payouts')),
            kind            text NOT NULL CHECK (kind IN (
                'invariant_violation', 'missing_at_cashfree', 'missing_here',
                'amount_differs', 'settled_twice', 'unsettled', 'payout_mismatch')),
            reference       text NOT NULL CHECK (length(reference) BETWEEN 1 AND 300),
            refs            jsonb NOT NULL DEFAULT '{}',
            expected_paise  bigint,
            actual_paise    bigint,
            detail          text NOT NULL CHECK (length(detail) BETWEEN 1 AND 2000),
            state           text NOT NULL DEFAULT 'open'
                            CHECK (state IN ('open', 'explained', 'resolved')),
            seen_count      integer NOT NULL DEFAULT 1 CHECK (seen_count >= 1),
            first_seen_at   timestamptz NOT NULL,
            last_seen_at    timestamptz NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            UNIQUE (source, kind, reference),
            CHECK (last_seen_at >= first_seen_at)
        );
        CREATE INDEX reconciliation_findings_list
            ON reconciliation_findings (created_at DESC, id DESC);
        CREATE INDEX reconciliation_findings_state
            ON reconciliation_findings (state, created_at DESC, id DESC);

        CREATE TABLE reconciliation_finding_transitions (
            id          uuid PRIMARY KEY,
            finding_id  uuid NOT NULL REFERENCES reconciliation_findings (id),
            from_state  text CHECK (from_state IN ('open', 'explained', 'resolved')),
            to_state    text NOT NULL CHECK (to_state IN ('open', 'explained', 'resolved')),
            actor       text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
            actor_role  text NOT NULL CHECK (length(actor_role) BETWEEN 1 AND 50),
            note        text NOT NULL CHECK (length(note) BETWEEN 1 AND 2000),
            created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX reconciliation_finding_transitions_finding
            ON reconciliation_finding_transitions (finding_id, created_at);
        CREATE TRIGGER reconciliation_finding_transitions_append_only
            BEFORE UPDATE OR DELETE ON reconciliation_finding_transitions
            FOR EACH ROW EXECUTE FUNCTION billing_refuse_change();
        CREATE TRIGGER reconciliation_finding_transitions_no_truncate
            BEFORE TRUNCATE ON reconciliation_finding_transitions
            FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse_change();
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP TABLE reconciliation_finding_transitions;
        DROP TABLE reconciliation_findings;
        """
    )
