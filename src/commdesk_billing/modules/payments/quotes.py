"""What a purchase costs and what it buys: packs or a custom top-up, with GST."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.errors import InvalidAmount, UnknownPack
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import Pack
from commdesk_billing.modules.tax.gst import GstBreakdown, compute

# DESIGN §3: ₹10 buys 100 credits, so one credit is 10 paise of face value.
PAISE_PER_CREDIT = 10


@dataclass(frozen=True)
class Quote:
    kind: str  # "pack" | "custom"
    pack: Pack | None
    base_credits: int
    bonus_credits: int
    gst: GstBreakdown


async def quote(
    conn: AsyncConnection,
    settings: Settings,
    *,
    pack_code: str | None,
    amount_paise: int | None,
    buyer_state: str,
) -> Quote:
    if (pack_code is None) == (amount_paise is None):
        raise InvalidAmount("give exactly one of pack_code and amount_paise")
    pack: Pack | None = None
    if pack_code is not None:
        pack = await repo.active_pack(conn, pack_code)
        if pack is None:
            raise UnknownPack(f"no active credit pack {pack_code!r}")
        price, base, bonus = pack.price_paise, pack.base_credits, pack.bonus_credits
    else:
        assert amount_paise is not None
        low, high = settings.topup_min_paise, settings.topup_max_paise
        if not low <= amount_paise <= high or amount_paise % 100:
            raise InvalidAmount(
                f"a custom top-up is a whole number of rupees from {low // 100} to {high // 100}",
                min_paise=low,
                max_paise=high,
            )
        price, base, bonus = amount_paise, amount_paise // PAISE_PER_CREDIT, 0
    gst = compute(
        price,
        rate_bp=settings.gst_rate_bp,
        mode=settings.gst_mode,
        buyer_state=buyer_state,
        seller_state=settings.seller_state_code,
    )
    return Quote(
        kind="pack" if pack else "custom",
        pack=pack,
        base_credits=base,
        bonus_credits=bonus,
        gst=gst,
    )
