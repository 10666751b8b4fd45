"""Auto-recharge settings: set by the wallet's owner (an idempotent PUT), read back with
the effective trigger level, and the decision log.

The wallet's own columns (`auto_recharge_enabled`, `auto_recharge_threshold`, the
effective `auto_recharge_trigger`) are kept true through the wallet's service, in the
transaction that saves the settings.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.errors import AutoRechargeInvalid, AutoRechargeMandateInvalid, DomainError
from commdesk_billing.modules.autorecharge import auth, predict, requests, trigger
from commdesk_billing.modules.autorecharge import repository as repo
from commdesk_billing.modules.autorecharge.model import Decision
from commdesk_billing.modules.autorecharge.schemas import AutoRechargeOut, AutoRechargeRequest
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.mandates.model import MandateStatus
from commdesk_billing.modules.payments.quotes import quote
from commdesk_billing.modules.wallet import service as wallet_service
from commdesk_billing.security.jwt import Principal

# A mandate auto-recharge may name: approved, or waiting for the member's approval (charged
# once approved; meanwhile its recharges go to the checkout link).
CHARGEABLE = frozenset({MandateStatus.PENDING, MandateStatus.ACTIVE})


async def configure(
    conn: AsyncConnection,
    settings: Settings,
    principal: Principal,
    wallet_id: uuid.UUID,
    req: AutoRechargeRequest,
) -> AutoRechargeOut:
    wallet = await wallet_service.get_wallet(conn, wallet_id, lock=True)
    await auth.authorize_configure(conn, principal, wallet)
    if req.mandate_id is not None:
        m = await mandates.owned(conn, req.mandate_id, wallet.owner_id)
        if m is None:
            raise AutoRechargeMandateInvalid("no such mandate of the wallet's owner")
        if m.status not in CHARGEABLE:
            raise AutoRechargeMandateInvalid(
                f"the mandate is {m.status.value}; set up a new one (POST /v1/mandates)"
            )
    elif req.enabled and not requests.can_link(settings):
        raise AutoRechargeInvalid(
            "auto-recharge without a mandate needs a checkout link to send, and none is "
            "configured (BILLING_AUTO_RECHARGE_CHECKOUT_URL)"
        )
    try:  # what it would buy must be buyable now
        await quote(
            conn,
            settings,
            pack_code=req.pack_code,
            amount_paise=req.amount_paise,
            buyer_state=settings.seller_state_code,
        )
    except DomainError as exc:
        raise AutoRechargeInvalid(str(exc)) from exc
    before = await repo.get_settings(conn, wallet_id)
    values = req.model_dump()
    saved = await repo.upsert_settings(conn, {"wallet_id": wallet_id, **values})
    found = await predict.predict(conn, settings, [(wallet_id, saved.threshold)])
    p = found[wallet_id]
    await repo.set_prediction(conn, wallet_id, p.burn_credits_per_hour, p.level, saved.updated_at)
    wallet = await wallet_service.configure_auto_recharge(
        conn,
        wallet_id,
        enabled=saved.enabled,
        threshold=saved.threshold,
        trigger=p.level if saved.enabled else None,
    )
    await repo.log(
        conn,
        wallet_id,
        None,
        "configured",
        "enabled" if saved.enabled else "disabled_by_member",
        {"threshold": saved.threshold, "trigger_level": wallet.auto_recharge_trigger},
    )
    level = wallet.auto_recharge_trigger
    switched_on = saved.enabled and (before is None or not before.enabled)
    if switched_on and level is not None and wallet.available_credits < level:
        # Already below the level when it is turned on: no debit will cross it, so this
        # is the crossing (once per switch-on; a repeat of the same PUT is not one).
        await trigger.request(conn, wallet, wallet.available_credits, cause="enabled_below_level")
    current = await repo.get_settings(conn, wallet_id)
    assert current is not None
    return AutoRechargeOut.of(
        current,
        trigger_level=wallet.auto_recharge_trigger,
        pending_credits=wallet.pending_credits,
    )


async def read(
    conn: AsyncConnection, principal: Principal, wallet_id: uuid.UUID
) -> AutoRechargeOut | None:
    """None: the wallet never had auto-recharge set up."""
    wallet = await wallet_service.get_wallet(conn, wallet_id)
    await auth.authorize_read(conn, principal, wallet)
    current = await repo.get_settings(conn, wallet_id)
    if current is None:
        return None
    return AutoRechargeOut.of(
        current,
        trigger_level=wallet.auto_recharge_trigger,
        pending_credits=wallet.pending_credits,
    )


async def decisions(
    conn: AsyncConnection,
    principal: Principal,
    wallet_id: uuid.UUID,
    *,
    before_id: int | None,
    limit: int,
) -> list[Decision]:
    wallet = await wallet_service.get_wallet(conn, wallet_id)
    await auth.authorize_read(conn, principal, wallet)
    return await repo.decisions(conn, wallet_id, before_id=before_id, limit=limit)


async def pause(conn: AsyncConnection, wallet_id: uuid.UUID, *, reason: str) -> bool:
    """An operator turns one wallet's auto-recharge off (the member may turn it back on);
    False when it was not on."""
    wallet = await wallet_service.get_wallet(conn, wallet_id, lock=True)
    current = await repo.get_settings(conn, wallet_id, lock=True)
    if current is None or not current.enabled:
        return False
    await repo.disable(conn, wallet_id)
    await wallet_service.configure_auto_recharge(
        conn, wallet_id, enabled=False, threshold=wallet.auto_recharge_threshold, trigger=None
    )
    await repo.log(conn, wallet_id, None, "disabled", "operator", {"note": reason[:200]})
    return True
