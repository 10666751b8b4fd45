"""Executing a request (`auto_recharge.requested` on `payment.processing`): guards first,
each refusal recorded; then either a charge on the member's mandate or, without a usable
mandate, an order opened for the member, whose checkout link is announced
(`auto_recharge.checkout_opened`).

Three steps, no transaction held across Cashfree (as `payments.ordering`):
  1. decide (one transaction, the wallet's row then the recharge's locked): the guards
     (kill switch, member's switch, back-off, cooldown, runaway, caps) for both branches,
     then requested → opening (the order or the charge fixed on the row), or skipped with
     the guard that said no;
  2. with a usable mandate, the charge raised by `mandates.service.charge` under the key
     `recharge:<id>`; else the order opened by `ordering.open_order` under
     `Buyer.system("auto-recharge", …)`, keyed by the recharge id. Either way a redelivery
     or a crash between the steps resumes the same charge or order, never a second;
  3. pending (pending_credits shown) or failed (refused).
A recharge already past `opening` is left as it is: the whole thing is idempotent by the
recharge's id.

A mandate that is no longer usable (revoked, paused, failed, not yet approved) is not
charged: the recharge falls back to the checkout link (`fired / mandate_unusable_checkout`),
so the member still gets one. A price above the mandate's maximum is refused
(`skipped / above_mandate_max`): nothing is charged.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    DomainError,
    GatewayRejected,
    GatewayUnavailable,
    MandateNotActive,
)
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.autorecharge import guards, outcomes
from commdesk_billing.modules.autorecharge import repository as repo
from commdesk_billing.modules.autorecharge.guards import Refusal
from commdesk_billing.modules.autorecharge.model import Recharge, RechargeSettings, RechargeStatus
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.payments import ordering
from commdesk_billing.modules.payments.mandate_charges import earliest_schedule_date
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


@dataclass(frozen=True)
class MandatePlan:
    """A charge on the member's mandate, fixed on the recharge at `opening`."""

    recharge_id: uuid.UUID
    mandate_id: uuid.UUID
    pack_code: str | None
    amount_paise: int | None
    schedule: date  # the debit date asked for (the earliest the rules allow, at opening)

    def stored(self) -> dict[str, Any]:
        return {
            "mandate_id": str(self.mandate_id),
            "pack_code": self.pack_code,
            "amount_paise": self.amount_paise,
            "schedule_date": self.schedule.isoformat(),
        }

    @classmethod
    def of(cls, recharge_id: uuid.UUID, stored: dict[str, Any]) -> MandatePlan:
        return cls(
            recharge_id=recharge_id,
            mandate_id=uuid.UUID(str(stored["mandate_id"])),
            pack_code=stored.get("pack_code"),
            amount_paise=stored.get("amount_paise"),
            schedule=date.fromisoformat(str(stored["schedule_date"])),
        )


# Cashfree refuses a schedule date before T+1 by its own clock (T+2 from 21:00 IST): a
# clock of ours a little behind its own at the cut-off or at midnight would have the charge
# refused. It is asked again for the next day, a few times, each under a key of its own.
SCHEDULE_REFUSED = "payment_schedule_date_invalid"
SCHEDULE_TRIES = 3


async def execute(
    engine: AsyncEngine,
    client: CashfreeClient,
    settings: Settings,
    recharge_id: uuid.UUID,
    *,
    subs_client: SubscriptionsClient | None = None,
) -> RechargeStatus | None:
    """Run one request to its next resting state; that state (None: no such recharge).
    `subs_client`: Cashfree Subscriptions, for a recharge charged on a mandate."""
    plan = await in_transaction(engine, lambda conn: decide(conn, settings, recharge_id))
    if isinstance(plan, RechargeStatus) or plan is None:
        return plan
    if isinstance(plan, MandatePlan):
        if subs_client is None:
            raise RuntimeError("a recharge on a mandate needs the Subscriptions client")
        fallback = await _on_mandate(engine, subs_client, settings, plan)
        if isinstance(fallback, RechargeStatus):
            return fallback
        plan = fallback
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
) -> Plan | MandatePlan | RechargeStatus | None:
    """Step 1. A Plan to open an order, a MandatePlan to charge the mandate, or the status
    the recharge rests in.

    The wallet's row is locked before the recharge's, as every other path does: the
    mandate branch writes the wallet's pending credits from here, and would otherwise take
    the wallet's lock under the recharge's (a deadlock with the settle job's outcomes)."""
    r = await outcomes.locked(conn, recharge_id)
    if r is None:
        return None
    if r.status is not R.requested and r.status is not R.opening:
        return r.status
    if r.status is R.opening:  # a crash between the steps: the same order or charge again
        assert r.order_request is not None
        if "mandate_id" in r.order_request:
            return MandatePlan.of(r.id, r.order_request)
        return await _plan(conn, r, OrderRequest.model_validate(r.order_request))
    cfg = await repo.get_settings(conn, r.wallet_id)
    now = datetime.now(UTC)
    refusal = guards.before_pricing(settings, cfg, now)
    if refusal is not None:
        return await _refuse(conn, r, refusal)
    assert cfg is not None
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
    fixed = {
        "opened_at": now,
        "amount_paise": priced.gst.amount_paise,
        "credits": priced.base_credits + priced.bonus_credits,
    }
    if cfg.mandate_id is not None:
        on_mandate = await charge_on_mandate(conn, r, cfg, priced.gst.amount_paise, now)
        if isinstance(on_mandate, Refusal):
            return await _refuse(conn, r, on_mandate)
        if on_mandate is not None:
            await repo.move(
                conn,
                r.id,
                R.opening,
                allowed=frozenset({R.requested}),
                order_request=json.dumps(on_mandate.stored()),
                **fixed,
            )
            return on_mandate
        # Not usable: this recharge goes to the checkout link (recorded by the seam).
    if not can_link(settings):  # the checkout link could not be sent: nothing to open
        return await _refuse(conn, r, Refusal("skipped", "no_checkout_link"))
    # The order is fixed here, with the recharge: a redelivery after a crash asks for the
    # very same one (its key's request must match), whatever the member changed since.
    order = _order(cfg)
    await repo.move(
        conn,
        r.id,
        R.opening,
        allowed=frozenset({R.requested}),
        order_request=order.model_dump_json(exclude_none=True),
        **fixed,
    )
    return await _plan(conn, r, order)


def _order(cfg: RechargeSettings) -> OrderRequest:
    return OrderRequest(
        pack_code=cfg.pack_code,
        amount_paise=cfg.amount_paise,
        customer_phone=cfg.customer_phone,
        customer_email=cfg.customer_email,
    )


async def charge_on_mandate(
    conn: AsyncConnection,
    r: Recharge,
    cfg: RechargeSettings,
    amount_paise: int,
    now: datetime,
) -> MandatePlan | Refusal | None:
    """The mandate branch, after every guard (the caller holds the wallet's row lock and
    then the recharge's). A plan to charge the mandate; a refusal when the price is above
    its maximum per debit; None when it is not usable now (revoked, paused, failed, not
    yet approved, or gone): recorded here as `fired / mandate_unusable_checkout`, and the
    caller opens a checkout order instead."""
    assert cfg.mandate_id is not None
    wallet = await wallet_service.get_wallet(conn, r.wallet_id)
    m = await mandates.owned(conn, cfg.mandate_id, wallet.owner_id)
    if m is None or not m.usable:
        facts = {
            "mandate_id": str(cfg.mandate_id),
            "mandate_status": m.status.value if m is not None else None,
        }
        await repo.log(conn, r.wallet_id, r.id, "fired", "mandate_unusable_checkout", facts)
        return None
    if amount_paise > m.max_amount_paise:
        return Refusal(
            "skipped",
            "above_mandate_max",
            {
                "mandate_id": str(m.id),
                "amount_paise": amount_paise,
                "max_amount_paise": m.max_amount_paise,
            },
        )
    return MandatePlan(
        recharge_id=r.id,
        mandate_id=m.id,
        pack_code=cfg.pack_code,
        amount_paise=cfg.amount_paise,
        schedule=earliest_schedule_date(now),
    )


async def _on_mandate(
    engine: AsyncEngine, subs_client: SubscriptionsClient, settings: Settings, plan: MandatePlan
) -> Plan | RechargeStatus:
    """Step 2 and 3 of the mandate branch: the charge raised (outside any transaction),
    then pending. A mandate found unusable now (revoked since step 1) sends this recharge
    to the checkout link: the Plan returned."""
    for extra in range(SCHEDULE_TRIES):
        key = f"recharge:{plan.recharge_id}" + (f":+{extra}" if extra else "")
        try:
            payment = await mandates.charge(
                engine,
                subs_client,
                settings,
                plan.mandate_id,
                key=key,
                pack_code=plan.pack_code,
                amount_paise=plan.amount_paise,
                actor=ACTOR,
                schedule=plan.schedule + timedelta(days=extra),
            )
            break
        except GatewayUnavailable as exc:
            raise TryLater(str(exc)) from exc
        except MandateNotActive:
            return await in_transaction(
                engine, lambda conn: _fall_back(conn, settings, plan.recharge_id)
            )
        except GatewayRejected as refused:
            if SCHEDULE_REFUSED in str(refused) and extra + 1 < SCHEDULE_TRIES:
                continue
            return await _failed(engine, settings, plan.recharge_id, refused.code)
        except DomainError as refused:  # the price above the maximum since, a pack withdrawn
            return await _failed(engine, settings, plan.recharge_id, refused.code)
    moved = await in_transaction(
        engine,
        lambda conn: outcomes.charged(conn, plan.recharge_id, payment, plan.mandate_id),
    )
    return moved or R.pending


async def _failed(
    engine: AsyncEngine, settings: Settings, recharge_id: uuid.UUID, code: str
) -> RechargeStatus:
    await in_transaction(engine, lambda conn: outcomes.fail(conn, settings, recharge_id, code))
    return R.failed


async def _fall_back(
    conn: AsyncConnection, settings: Settings, recharge_id: uuid.UUID
) -> Plan | RechargeStatus:
    """The mandate was revoked (or paused) between deciding and charging: the same recharge,
    its price already counted, opens a checkout order instead."""
    r = await outcomes.locked(conn, recharge_id)
    if r is None:
        return R.failed
    if r.status is not R.opening or r.order_request is None:
        return r.status
    if "mandate_id" not in r.order_request:  # fell back already (a redelivery)
        return await _plan(conn, r, OrderRequest.model_validate(r.order_request))
    cfg = await repo.get_settings(conn, r.wallet_id)
    facts = {"mandate_id": str(r.order_request["mandate_id"]), "mandate_status": "not_active"}
    await repo.log(conn, r.wallet_id, r.id, "fired", "mandate_unusable_checkout", facts)
    if cfg is None or not can_link(settings):
        await outcomes.fail(conn, settings, r.id, "no_checkout_link")
        return R.failed
    order = _order(cfg)
    await repo.set_order_request(conn, r.id, order.model_dump_json(exclude_none=True))
    return await _plan(conn, r, order)


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
