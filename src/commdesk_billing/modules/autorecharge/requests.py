"""Executing a request (`auto_recharge.requested` on `payment.processing`): guards first,
each refusal recorded; then, without a mandate, an order opened for the member, whose
checkout link is announced (`auto_recharge.checkout_opened`).

Three steps, no transaction held across Cashfree (as `payments.ordering`):
  1. decide (one transaction, the wallet's row then the recharge's locked): requested →
     opening, or skipped with the guard that said no;
  2. open the order with `ordering.open_order` under `Buyer.system("auto-recharge", …)`,
     keyed by the recharge id, so a redelivery or a crash between the steps resumes the same
     order and never opens a second;
  3. opened (pending, pending_credits shown) or failed (the order was refused).
A recharge already past `opening` is left as it is: the whole thing is idempotent by the
recharge's id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import DomainError, GatewayUnavailable
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.modules.autorecharge import guards, outcomes
from commdesk_billing.modules.autorecharge import repository as repo
from commdesk_billing.modules.autorecharge.guards import Refusal
from commdesk_billing.modules.autorecharge.model import Recharge, RechargeSettings, RechargeStatus
from commdesk_billing.modules.payments import ordering
from commdesk_billing.modules.payments.quotes import quote
from commdesk_billing.modules.payments.schemas import OrderRequest
from commdesk_billing.modules.users import service as users
from commdesk_billing.modules.wallet import service as wallet_service

log = structlog.get_logger(__name__)

R = RechargeStatus
ACTOR = "auto-recharge"


class TryLater(Exception):
    """Cashfree did not answer: the message is retried (the order's key makes it safe)."""


@dataclass(frozen=True)
class Plan:
    recharge_id: uuid.UUID
    subject: str  # the member's JWT subject: the order is theirs
    order: OrderRequest


async def execute(
    engine: AsyncEngine, client: CashfreeClient, settings: Settings, recharge_id: uuid.UUID
) -> RechargeStatus | None:
    """Run one request to its next resting state; that state (None: no such recharge)."""
    plan = await in_transaction(engine, lambda conn: decide(conn, settings, recharge_id))
    if isinstance(plan, RechargeStatus) or plan is None:
        return plan
    buyer = ordering.Buyer.system(ACTOR, plan.subject, f"recharge:{plan.recharge_id}")
    try:
        answer = await ordering.open_order(engine, client, settings, buyer, plan.order)
    except GatewayUnavailable as exc:
        raise TryLater(str(exc)) from exc
    except DomainError as refused:
        # Refused for good (Cashfree said no, too many unpaid orders, a pack withdrawn):
        # this recharge failed, and counts towards the failures in a row.
        code = refused.code
        await in_transaction(
            engine, lambda conn: outcomes.fail(conn, settings, plan.recharge_id, code)
        )
        return R.failed
    body = answer.body
    payment_id = uuid.UUID(str(body["id"]))
    await in_transaction(
        engine,
        lambda conn: outcomes.opened(
            conn,
            plan.recharge_id,
            payment_id=payment_id,
            amount_paise=int(body["amount_paise"]),
            credits=int(body["credits"]),
            checkout_url=body.get("checkout_url") or checkout_page(settings, payment_id),
        ),
    )
    return R.pending


def can_link(settings: Settings) -> bool:
    """Whether a member can be sent where to pay an order (Cashfree's hosted page, or
    ours when Cashfree's checkout is opened by its JS SDK)."""
    return bool(settings.cashfree_checkout_url or settings.auto_recharge_checkout_url)


def checkout_page(settings: Settings, payment_id: uuid.UUID) -> str | None:
    template = settings.auto_recharge_checkout_url
    return template.replace("{payment_id}", str(payment_id)) if template else None


async def decide(
    conn: AsyncConnection, settings: Settings, recharge_id: uuid.UUID
) -> Plan | RechargeStatus | None:
    """Step 1. A Plan to open an order, or the status the recharge rests in.

    The wallet's row is locked before the recharge's, as every other path does: the
    mandate branch writes the wallet's pending credits from here, and would otherwise take
    the wallet's lock under the recharge's (a deadlock with the settle job's outcomes)."""
    r = await outcomes.locked(conn, recharge_id)
    if r is None:
        return None
    if r.status is not R.requested and r.status is not R.opening:
        return r.status
    if r.status is R.opening:  # a crash between the steps: the same order again
        assert r.order_request is not None
        return await _plan(conn, r, OrderRequest.model_validate(r.order_request))
    cfg = await repo.get_settings(conn, r.wallet_id)
    now = datetime.now(UTC)
    refusal = guards.before_pricing(settings, cfg, now)
    if refusal is not None:
        return await _refuse(conn, r, refusal)
    assert cfg is not None
    if cfg.mandate_id is not None:
        refused = await charge_on_mandate(conn, settings, r, cfg)
        return R.pending if refused is None else await _refuse(conn, r, refused)
    if not can_link(settings):  # the checkout link could not be sent: nothing to open
        return await _refuse(conn, r, Refusal("skipped", "no_checkout_link"))
    try:
        priced = await quote(
            conn,
            settings,
            pack_code=cfg.pack_code,
            amount_paise=cfg.amount_paise,
            buyer_state=settings.seller_state_code,
        )
    except DomainError as exc:  # the pack was withdrawn since the settings were saved
        return await _refuse(conn, r, Refusal("skipped", exc.code))
    usage = await repo.usage(
        conn,
        r.wallet_id,
        day_start=guards.day_start(now),
        month_start=guards.month_start(now),
        window_start=now - timedelta(seconds=settings.auto_recharge_runaway_window_s),
    )
    refusal = guards.with_usage(settings, cfg, usage, priced.gst.amount_paise, now)
    if refusal is not None:
        if refusal.decision == "runaway":
            # The alert: something keeps draining this wallet (or a loop keeps asking).
            log.error("auto_recharge.runaway", wallet_id=str(r.wallet_id), **refusal.facts)
        return await _refuse(conn, r, refusal)
    # The order is fixed here, with the recharge: a redelivery after a crash asks for the
    # very same one (its key's request must match), whatever the member changed since.
    order = OrderRequest(
        pack_code=cfg.pack_code,
        amount_paise=cfg.amount_paise,
        customer_phone=cfg.customer_phone,
        customer_email=cfg.customer_email,
    )
    await repo.move(
        conn,
        r.id,
        R.opening,
        allowed=frozenset({R.requested}),
        opened_at=now,
        amount_paise=priced.gst.amount_paise,
        credits=priced.base_credits + priced.bonus_credits,
        order_request=order.model_dump_json(exclude_none=True),
    )
    return await _plan(conn, r, order)


async def charge_on_mandate(
    conn: AsyncConnection, settings: Settings, r: Recharge, cfg: RechargeSettings
) -> Refusal | None:
    """THE SEAM of the mandate branch (a wallet whose settings name a mandate).

    To be filled by the mandates module: refuse an amount above the mandate's maximum
    (`Refusal("skipped", "above_mandate_max")`), else raise the charge on the mandate (the
    pre-debit notice, then the charge on the earliest allowed day), move the recharge to
    `pending` with its payment and credits and add them to the wallet's pending credits
    (as `outcomes.opened` does), and return None. The caller holds the wallet's row lock
    and then the recharge's (that order, always). Until then nothing can name a mandate
    (`PUT …/auto-recharge` refuses `mandate_id` with `mandates_not_available`), and a row
    that somehow does is skipped, never charged.
    """
    return Refusal("skipped", "mandates_not_available")


async def _refuse(conn: AsyncConnection, r: Recharge, refusal: Refusal) -> RechargeStatus:
    await repo.move(
        conn,
        r.id,
        R.skipped,
        allowed=frozenset({R.requested}),
        reason=refusal.reason,
        settled_at=datetime.now(UTC),
    )
    await repo.log(conn, r.wallet_id, r.id, refusal.decision, refusal.reason, refusal.facts)
    log.info(
        "auto_recharge.refused",
        wallet_id=str(r.wallet_id),
        decision=refusal.decision,
        reason=refusal.reason,
    )
    return R.skipped


async def _plan(conn: AsyncConnection, r: Recharge, order: OrderRequest) -> Plan:
    wallet = await wallet_service.get_wallet(conn, r.wallet_id)
    member = await users.get_user(conn, wallet.owner_id)
    return Plan(recharge_id=r.id, subject=member.external_id, order=order)
