"""The fraud screening of an order about to be written (`ordering.write_row`): what the
order would be, as fraud's rules read it (its amount, whether it buys the largest pack)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.modules.fraud import screening


async def screen(
    conn: AsyncConnection,
    ctx: screening.Context,
    settings: Settings,
    subject: str,
    attempt_key: str,
    wallet_id: uuid.UUID,
    user_id: uuid.UUID,
    figures: dict[str, Any],
) -> screening.Screening:
    """Score the attempt (fraud's rules) from what the order would be. Whether a pack is
    the largest on sale is read with the buyer's history (one statement, not two)."""
    return await screening.screen_order(
        conn,
        ctx,
        settings,
        screening.OrderAttempt(
            subject=subject,
            user_id=user_id,
            wallet_id=wallet_id,
            attempt_key=attempt_key,
            amount_paise=int(figures["amount_paise"]),
            buys_pack=figures.get("pack_code") is not None,
            ip=ctx.ip,
            device_id=ctx.device_id,
        ),
    )
