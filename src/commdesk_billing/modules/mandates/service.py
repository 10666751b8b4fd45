"""Mandates (DESIGN §12, cashfree.md §12): a member authorises CommDesk to debit their UPI
AutoPay or card up to a maximum per debit; charges raised on it buy credits through the
verified purchase path (`payments.mandate_charges`).

A mandate is an ON_DEMAND Cashfree subscription with an inline plan whose `plan_max_amount`
is the mandate's maximum, its `subscription_id` derived from our id (a repeated create names
the same subscription; Cashfree refuses a second with 409, answered by a fetch). Its status
is what Cashfree's API says (`fetch_subscription`), asked after a signed webhook, by the sync
job and on a stale read: never a webhook's word. A member's revoke makes it unusable here at
once, then cancels it at Cashfree (again by the sync until Cashfree agrees).

Every change of status announces `mandate.status_changed` {mandate_id, user_id, status,
max_amount_paise} in the transaction that made it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime, timedelta
from urllib.parse import quote

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Environment, Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    GatewayRejected,
    GatewayUnavailable,
    IdempotencyMismatch,
    MandateAmountTooHigh,
    MandateNotActive,
    MandateNotRevocable,
)
from commdesk_billing.gateway.errors import (
    CashfreeConflict,
    CashfreeError,
    CashfreeRejected,
)
from commdesk_billing.gateway.subscription_models import PlanSpec
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.mandates import auth, status
from commdesk_billing.modules.mandates import repository as repo
from commdesk_billing.modules.mandates.model import (
    OPEN,
    Mandate,
)
from commdesk_billing.modules.mandates.model import MandateStatus as M
from commdesk_billing.modules.mandates.schemas import MAX_PER_DEBIT_PAISE, MandateRequest
from commdesk_billing.modules.payments import mandate_charges
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.ordering import Attach, Buyer, Charge
from commdesk_billing.modules.payments.schemas import OrderRequest
from commdesk_billing.modules.users import service as users
from commdesk_billing.queues import outbox
from commdesk_billing.security.jwt import Principal
from commdesk_billing.security.timestamps import IST

log = structlog.get_logger(__name__)

# The hosted authorisation page of the local sandbox (production: see `authorization_url`).
_SANDBOX_AUTHORIZE_PATH = "/pg/view/subscriptions/authorize"


def subscription_id_for(mandate_id: uuid.UUID) -> str:
    """Cashfree's `subscription_id` of a mandate: derived from our id, so a retried create
    can only ever name the one subscription."""
    return "cdbm_" + mandate_id.hex


def authorization_url(settings: Settings, m: Mandate) -> str | None:
    """Where the member authorises the mandate, while it waits for that. Cashfree's own page
    is opened by its JS SDK from the session id (`subscriptionsCheckout({subsSessionId})`):
    production sets `BILLING_MANDATE_AUTHORIZE_URL` to CommDesk's page that does so
    (`{subscription_session_id}` is filled in); unset, the sandbox's hosted page is used."""
    if m.session_id is None or m.status not in (M.PENDING, M.FAILED):
        return None
    session = quote(m.session_id, safe="")
    if settings.mandate_authorize_url:
        return settings.mandate_authorize_url.replace("{subscription_session_id}", session)
    if settings.env is Environment.production:
        # Cashfree serves no such page: the frontend opens its checkout from the session id.
        return None
    root = settings.cashfree_base_url.rstrip("/")
    root = root.removesuffix("/pg")
    return f"{root}{_SANDBOX_AUTHORIZE_PATH}?subscription_session_id={session}"


def _request_hash(req: MandateRequest) -> str:
    canonical = json.dumps(req.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- create ----------------------------------------------------------------------------------


async def create(
    engine: AsyncEngine,
    client: SubscriptionsClient,
    settings: Settings,
    principal: Principal,
    req: MandateRequest,
    key: str,
) -> Mandate:
    """Set up a mandate for the caller: our row first (under their Idempotency-Key), then the
    subscription at Cashfree. A repeat with the same key and body returns the same mandate
    (and creates it at Cashfree if the first call's answer was lost)."""
    auth.authorize_create(principal)
    if req.max_amount_paise > MAX_PER_DEBIT_PAISE:
        raise MandateAmountTooHigh(
            "UPI AutoPay and card mandates debit at most 1500000 paise (₹15,000) without "
            "the payer's extra authentication",
            max_amount_paise=MAX_PER_DEBIT_PAISE,
        )
    scoped = f"{len(principal.sub)}:{principal.sub}:{key}"
    request_hash = _request_hash(req)

    async def write(conn: AsyncConnection) -> Mandate:
        found = await repo.by_key(conn, scoped)
        if found is not None:
            return found
        user_id = await users.ensure_user(
            conn, principal.sub, email=principal.email, name=principal.name
        )
        mandate_id = uuid.uuid4()
        await repo.insert(
            conn,
            {
                "id": mandate_id,
                "user_id": user_id,
                "idempotency_key": scoped,
                "request_hash": request_hash,
                "subscription_id": subscription_id_for(mandate_id),
                "max_amount_paise": req.max_amount_paise,
                "customer_phone": req.customer_phone,
                "valid_until": req.valid_until,
                "status": M.PENDING.value,
            },
        )
        made = await repo.by_key(conn, scoped)
        assert made is not None
        return made

    m = await in_transaction(engine, write)
    if m.request_hash != request_hash:
        raise IdempotencyMismatch("Idempotency-Key was already used for a different mandate")
    if m.cashfree_status is not None:
        return m
    try:
        try:
            sub = await client.create_subscription(
                subscription_id=m.subscription_id,
                customer_email=req.customer_email,
                customer_phone=m.customer_phone,
                customer_name=principal.name,
                plan=PlanSpec(
                    plan_name=f"CommDesk credits {m.id.hex[:8]}",
                    max_amount_paise=m.max_amount_paise,
                    note="Credits top-up, up to the maximum per debit",
                ),
                payment_methods=["upi", "card"],
                return_url=settings.payment_return_url,
                expiry_time=m.valid_until,
                tags={"mandate_id": str(m.id)},
                # No key: the subscription_id is the deduplication (409 → fetch).
            )
        except CashfreeConflict:
            sub = await client.fetch_subscription(m.subscription_id)
    except CashfreeRejected as exc:
        reason = f"{exc.code or 'rejected'}: {exc.message}"[:300]
        if exc.status == 400:

            async def refused(conn: AsyncConnection) -> None:
                current = await status.existing(conn, m.id, lock=True)
                if current.status is M.PENDING and current.cashfree_status is None:
                    await repo.update(conn, m.id, status=M.FAILED.value, cashfree_status="REFUSED")
                    await status.announce(conn, current, M.FAILED)

            await in_transaction(engine, refused)
        raise GatewayRejected(reason, gateway_status=exc.status) from exc
    except CashfreeError as exc:
        raise GatewayUnavailable(
            "Cashfree did not answer; repeat the request with the same Idempotency-Key",
            retry_after_s=5,
        ) from exc
    return await in_transaction(engine, lambda conn: status.apply_subscription(conn, m.id, sub))


async def refresh(
    engine: AsyncEngine, client: SubscriptionsClient, mandate_id: uuid.UUID
) -> Mandate:
    """Ask Cashfree now and apply its answer (sending a member's pending CANCEL first)."""
    m = await in_transaction(engine, lambda conn: status.existing(conn, mandate_id))
    if m.cashfree_status is None and m.status is M.PENDING and m.session_id is None:
        return m  # never reached Cashfree: the member's repeat of the create makes it
    sub = await status.fetch_subscription(client, m.subscription_id, cancel=status.needs_cancel(m))
    if sub is None:
        return m
    return await in_transaction(engine, lambda conn: status.apply_subscription(conn, m.id, sub))


# --- reads ------------------------------------------------------------------------------------


async def read(
    engine: AsyncEngine,
    client: SubscriptionsClient,
    settings: Settings,
    principal: Principal,
    mandate_id: uuid.UUID,
) -> Mandate:
    """A mandate for its owner or staff; asked of Cashfree first when its status may have
    moved and was not asked about lately (Cashfree away: the stored one is answered)."""

    async def load(conn: AsyncConnection) -> Mandate:
        m = await status.existing(conn, mandate_id)
        await auth.authorize_read(conn, principal, m)
        return m

    m = await in_transaction(engine, load)
    stale_before = datetime.now(IST) - timedelta(seconds=settings.payment_sync_after_s)
    if m.status in OPEN and (m.refreshed_at is None or m.refreshed_at < stale_before):
        try:
            return await refresh(engine, client, m.id)
        except CashfreeError as exc:
            log.info("mandate.refresh_failed", mandate_id=str(m.id), error=type(exc).__name__)
    return m


async def list_mine(
    engine: AsyncEngine, principal: Principal, *, limit: int = 100
) -> list[Mandate]:
    async def work(conn: AsyncConnection) -> list[Mandate]:
        user_id = await users.user_id_for(conn, principal.sub)
        if user_id is None:
            return []
        return await repo.list_for_user(conn, user_id, limit=limit)

    return await in_transaction(engine, work)


async def usable(
    conn: AsyncConnection, mandate_id: uuid.UUID, user_id: uuid.UUID
) -> Mandate | None:
    """The mandate if it is `user_id`'s and active now (charges may be raised on it)."""
    m = await repo.get(conn, mandate_id)
    if m is None or m.user_id != user_id or not m.usable:
        return None
    return m


async def owned(conn: AsyncConnection, mandate_id: uuid.UUID, user_id: uuid.UUID) -> Mandate | None:
    """The mandate if it is `user_id`'s, whatever its status (None: no such mandate, or
    another member's)."""
    m = await repo.get(conn, mandate_id)
    return m if m is not None and m.user_id == user_id else None


# --- revoke -----------------------------------------------------------------------------------


async def revoke(
    engine: AsyncEngine,
    client: SubscriptionsClient,
    principal: Principal,
    mandate_id: uuid.UUID,
) -> Mandate:
    """The member revokes: unusable here at once (no charge can be raised on it from this
    commit on), then cancelled at Cashfree (which cancels its charges not yet debited). A
    CANCEL that fails is sent again by the sync job. Repeating is harmless."""

    async def mark(conn: AsyncConnection) -> Mandate:
        # The row lock orders this against a charge being written (`charge` takes it too).
        m = await status.existing(conn, mandate_id, lock=True)
        await auth.authorize_revoke(conn, principal, m)
        if m.status is M.REVOKED:
            return m
        if m.status in (M.EXPIRED, M.COMPLETED):
            raise MandateNotRevocable(f"the mandate is {m.status.value}")
        await repo.update(conn, m.id, status=M.REVOKED.value, revoked_by="member")
        await status.announce(conn, m, M.REVOKED)
        await outbox.send(
            conn,
            "payment.processing",
            "mandate.refresh",
            {"mandate_id": str(m.id), "cancel": True},
            correlation_id=str(m.id),
        )
        return await status.existing(conn, m.id)

    m = await in_transaction(engine, mark)
    if status.needs_cancel(m):
        try:
            return await refresh(engine, client, m.id)
        except CashfreeError as exc:
            log.info("mandate.cancel_deferred", mandate_id=str(m.id), error=type(exc).__name__)
    return m


# --- charges (for auto-recharge and subscriptions) ---------------------------------------------


async def charge(
    engine: AsyncEngine,
    subs_client: SubscriptionsClient,
    settings: Settings,
    mandate_id: uuid.UUID,
    *,
    key: str,
    pack_code: str | None = None,
    amount_paise: int | None = None,
    actor: str = "mandate",
    schedule: date | None = None,
) -> Payment:
    """Raise a charge on an active mandate that buys `pack_code` (or a top-up of
    `amount_paise`) for the mandate's owner; credited through the purchase path once
    Cashfree's API says the debit succeeded. `key`: the caller's deterministic key (e.g. the
    wallet and the recharge's sequence): one payment per mandate, actor and key, ever.
    `schedule`: the debit date (default: the earliest the rules allow).

    Refuses a new charge on a mandate that is not active (`MandateNotActive`; a repeat of a
    charge already written under `key` resumes it whatever the mandate's status) and a price
    above its maximum (`MandateAmountTooHigh`); raises `GatewayUnavailable` / `GatewayRejected` as
    `open_mandate_charge` does. Returns the payment (ACTIVE once raised)."""
    if (pack_code is None) == (amount_paise is None):
        raise ValueError("give exactly one of pack_code and amount_paise")

    async def load(conn: AsyncConnection) -> tuple[Mandate, str]:
        m = await status.existing(conn, mandate_id)
        user = await users.get_user(conn, m.user_id)
        return m, user.external_id

    m, subject = await in_transaction(engine, load)
    # No usability check here: a repeat of a charge already written under `key` must resume
    # it (it may be live at Cashfree, its answer lost) even if the mandate was paused or
    # revoked since; refusing would send the caller to another payment on top of it. A new
    # charge is refused by `still_usable`, in the transaction that would write it.
    if amount_paise is not None and amount_paise > m.max_amount_paise:
        raise MandateAmountTooHigh(
            "the amount is above the mandate's maximum per debit",
            max_amount_paise=m.max_amount_paise,
        )

    async def still_usable(conn: AsyncConnection, _payment: Payment) -> None:
        # In the payment row's own transaction, under the mandate's row lock (revoke takes
        # it too): a revoke that committed first leaves no charge written after it.
        current = await status.existing(conn, mandate_id, lock=True)
        if not current.usable:
            raise MandateNotActive(f"the mandate is {current.status.value}")

    return await mandate_charges.open_mandate_charge(
        engine,
        subs_client,
        settings,
        Buyer.system(actor, subject, f"mandate:{m.id}:{key}"),
        OrderRequest(
            pack_code=pack_code, amount_paise=amount_paise, customer_phone=m.customer_phone
        ),
        m.subscription_id,
        schedule,
        max_amount_paise=m.max_amount_paise,
        guard=still_usable,
    )


async def charge_for(
    engine: AsyncEngine,
    subs_client: SubscriptionsClient,
    settings: Settings,
    mandate_id: uuid.UUID,
    charge: Charge,
    *,
    key: str,
    actor: str,
    schedule: date | None = None,
    attach: Attach | None = None,
) -> Payment:
    """Raise a charge that buys no credits (`charge`: e.g. an INR subscription period) on an
    active mandate, for the mandate's owner; handed back to the module that opened it when
    Cashfree's API says the debit succeeded (`payments.mandate_charges.open_mandate_payment`).
    `key`: the caller's deterministic key: one payment per mandate, actor and key, ever.
    `attach`: the caller's own row, written in the payment row's transaction after the
    mandate is found still usable under its row lock (as `charge`'s guard).

    Refuses a mandate that is not active (`MandateNotActive`) and a price above its maximum
    (`MandateAmountTooHigh`), writing nothing."""

    async def load(conn: AsyncConnection) -> tuple[Mandate, str]:
        m = await status.existing(conn, mandate_id)
        user = await users.get_user(conn, m.user_id)
        return m, user.external_id

    m, subject = await in_transaction(engine, load)
    if not m.usable:
        raise MandateNotActive(f"the mandate is {m.status.value}")

    async def guarded(conn: AsyncConnection, payment: Payment) -> None:
        # Under the mandate's row lock (revoke takes it too): a revoke that committed first
        # leaves no charge written after it.
        current = await status.existing(conn, mandate_id, lock=True)
        if not current.usable:
            raise MandateNotActive(f"the mandate is {current.status.value}")
        if attach is not None:
            await attach(conn, payment)

    return await mandate_charges.open_mandate_payment(
        engine,
        subs_client,
        settings,
        Buyer.system(actor, subject, f"mandate:{m.id}:{key}"),
        charge,
        m.subscription_id,
        schedule,
        max_amount_paise=m.max_amount_paise,
        attach=guarded,
    )
