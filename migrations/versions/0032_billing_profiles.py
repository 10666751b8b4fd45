"""Billing profiles: the buyer's legal name, address, GST state and optional GSTIN.

Revision ID: 0032
Revises: 0025
Create Date: 2026-12-07

One per user, written by the user (`PUT /v1/billing-profile`). An order takes a copy into
its payment (`metadata.buyer`), so a tax invoice prints the buyer as they were when they
bought, whatever the profile says later. A GSTIN's first two digits are its registration's
state, which is then the buyer's state (the place of supply of a registered recipient); the
check character is checked by the application (`modules/tax/gstin.py`), the shape here.
"""

from __future__ import annotations

from alembic import op

revision = "0032"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE billing_profiles (
            user_id       uuid PRIMARY KEY REFERENCES users (id),
            legal_name    text NOT NULL CHECK (length(legal_name) BETWEEN 1 AND 200),
            address_line1 text NOT NULL CHECK (length(address_line1) BETWEEN 1 AND 200),
            address_line2 text CHECK (length(address_line2) BETWEEN 1 AND 200),
            city          text NOT NULL CHECK (length(city) BETWEEN 1 AND 100),
            postal_code   text NOT NULL CHECK (postal_code ~ '^[1-9][0-9]{5}$'),
            state_code    text NOT NULL CHECK (state_code ~ '^(0[1-9]|[12][0-9]|3[0-8]|97)$'),
            gstin         text CHECK (
                gstin ~ '^(0[1-9]|[12][0-9]|3[0-8]|97)[A-Z]{5}[0-9]{4}[A-Z][1-9A-Z]Z[0-9A-Z]$'
            ),
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            CHECK (gstin IS NULL OR substr(gstin, 1, 2) = state_code)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE billing_profiles")
