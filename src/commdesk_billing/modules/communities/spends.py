"""Spending in a community and reversing a spend (DESIGN §10), each one transaction: the
member's wallet (statement line, lots, movements), one journal in both ledgers, and the
spend's own row with its fee receipt.

Only the member's wallet row is locked. The community's accounts keep no balance row, so a
popular community never serializes its members' spends (DESIGN §4, hot accounts); its
earnings are summed from its spends when asked.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import IdempotencyMismatch, NotFound, SpendAlreadyReversed
from commdesk_billing.modules.communities import fees, plans
from commdesk_billing.modules.communities import repository as repo
from commdesk_billing.modules.communities.directory import Community
from commdesk_billing.modules.communities.model import Spend
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.accounts import open_community_accounts
from commdesk_billing.modules.ledger.model import CommunityAccounts, Journal
from commdesk_billing.modules.wallet import spending
from commdesk_billing.modules.wallet.model import Lot, Wallet
from commdesk_billing.modules.wallet.recognition import Draw, basis_of
from commdesk_billing.queues import outbox


def _same_request(spend: Spend, community: Community, wallet: Wallet, credits: int) -> Spend:
    if (spend.community_id, spend.wallet_id, spend.credits) != (community.id, wallet.id, credits):
        raise IdempotencyMismatch("idempotency key was already used for another spend")
    return spend


async def spend(
    conn: AsyncConnection,
    *,
    community: Community,
    wallet: Wallet,
    user_external_id: str,
    credits: int,
    reason: str,
    reference: str | None,
    operation_key: str,
    actor: str,
    default_fee_bps: int,
    plan_cache_s: float = 0.0,
) -> Spend:
    """`credits` of the member's wallet into `community` (active: the caller checked).
    On the hot path: the plan (cached) and the community's accounts (known once seen) cost
    nothing; the wallet's three round trips carry the spend's own row in their write."""
    plan = await plans.current(conn, community.id, default_fee_bps, cache_s=plan_cache_s)
    accounts = await open_community_accounts(conn, community.id)
    spend_id = uuid.uuid4()
    made: list[Spend] = []
    splits: list[fees.Split] = []

    def posting(drawn: Sequence[Draw], at: datetime) -> Journal:
        split = fees.split(credits, basis_of(drawn), plan.fee_bps)
        splits.append(split)
        return postings.community_spend(
            operation_key=operation_key,
            wallet_id=wallet.id,
            available_account_id=wallet.available_account_id,
            community=accounts,
            credits=credits,
            fee_credits=split.fee_credits,
            basis_paise=split.basis_paise,
            fee_paise=split.fee_paise,
            at=at,
            reason=f"spend in {community.name}",
            spend_id=spend_id,
        )

    def row(journal: Journal, line_id: uuid.UUID) -> tuple[str, dict[str, Any]]:
        (split,) = splits
        made.append(
            Spend(
                id=spend_id,
                community_id=community.id,
                wallet_id=wallet.id,
                user_external_id=user_external_id,
                credits=credits,
                fee_credits=split.fee_credits,
                community_credits=split.community_credits,
                basis_paise=split.basis_paise,
                fee_paise=split.fee_paise,
                community_paise=split.community_paise,
                fee_bps=plan.fee_bps,
                fee_plan_version=plan.version,
                reason=reason,
                reference=reference,
                idempotency_key=operation_key,
                journal_id=journal.id,
                transaction_id=line_id,
                created_by=actor,
                created_at=journal.created_at,
            )
        )
        return repo.insert_spend_sql(made[0])

    result, _ = await spending.spend(
        conn,
        wallet_id=wallet.id,
        credits=credits,
        idempotency_key=operation_key,
        reason=f"{reason} - in {community.name}",
        posting=posting,
        row=row,
        source_id=str(spend_id),
        metadata={
            "community_id": community.id,
            "community_name": community.name,
            "spend_id": str(spend_id),
            **({"reference": reference} if reference else {}),
        },
    )
    if result.replayed:  # this key spent before: the same spend, or a mismatch
        done = await repo.spend_by_key(conn, operation_key)
        assert done is not None, "a spend's statement line without its spend row"
        return _same_request(done, community, wallet, credits)
    spent = made[0]
    # For whoever consumes it (events out: `spend.created`); one more row in this
    # transaction, written only while a consumer is routed for it.
    await outbox.announce(
        conn,
        "community.spent",
        {
            "spend_id": str(spent.id),
            "community_id": spent.community_id,
            "wallet_id": str(spent.wallet_id),
            "user_external_id": spent.user_external_id,
            "credits": spent.credits,
            "fee_credits": spent.fee_credits,
            "community_credits": spent.community_credits,
            "reference": spent.reference,
        },
        correlation_id=str(spent.id),
    )
    return spent


def _restored_expiry(draws: Sequence[tuple[Lot, int, int]]) -> datetime | None:
    """Credits given back keep the latest expiry they were drawn with, and none if any of
    them had none: a reversal never makes a member's credits expire sooner."""
    expiries = [lot.expires_at for lot, _, _ in draws]
    if not expiries or any(e is None for e in expiries):
        return None
    return max(e for e in expiries if e is not None)


async def reverse(conn: AsyncConnection, *, spend_id: uuid.UUID, reason: str, actor: str) -> Spend:
    """Give the spend's credits back to the member (a new lot with the basis they were
    spent with) and take the community's share and the fee back. Once per spend."""
    original = await repo.lock_spend(conn, spend_id)
    if original is None:
        raise NotFound(f"community spend {spend_id} does not exist")
    if original.reversed_at is not None:
        raise SpendAlreadyReversed(
            f"spend {spend_id} was reversed at {original.reversed_at.isoformat()}",
            reversed_at=original.reversed_at.isoformat(),
        )
    draws = await spending.drawn_by(conn, original.transaction_id)
    accounts = CommunityAccounts.of(original.community_id)

    def posting(lot: Lot, at: datetime) -> Journal:
        return postings.community_spend_reversed(
            operation_key=f"community_spend:{original.id}:reversal",
            wallet_id=original.wallet_id,
            available_account_id=wallet_available,
            community=accounts,
            credits=original.credits,
            fee_credits=original.fee_credits,
            basis_paise=original.basis_paise,
            fee_paise=original.fee_paise,
            at=at,
            reason=f"spend {original.id} reversed",
            spend_id=original.id,
        )

    wallet_available = await spending.available_account_of(conn, original.wallet_id)
    result = await spending.restore(
        conn,
        wallet_id=original.wallet_id,
        credits=original.credits,
        basis_paise=original.basis_paise,
        expires_at=_restored_expiry(draws),
        idempotency_key=f"community_spend:{original.id}:reversal",
        reason=f"spend reversed: {reason}",
        posting=posting,
        source_ref=str(original.id),
        metadata={"community_id": original.community_id, "spend_id": str(original.id)},
    )
    assert result.line.lot_id is not None
    inserted = await repo.insert_reversal(
        conn,
        spend_id=original.id,
        journal_id=result.line.journal_id,
        transaction_id=result.line.id,
        lot_id=result.line.lot_id,
        reason=reason,
        created_by=actor,
        at=result.line.created_at,
    )
    assert inserted, "the spend row is locked: nobody else can have reversed it"
    reversed_ = await repo.get_spend(conn, original.id)
    assert reversed_ is not None
    return reversed_
