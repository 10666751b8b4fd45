"""A repeat of the CHARGE call refused with a 400 after the first call's answer was lost: the
first call may have made the charge at Cashfree (the payer notified, the debit coming), so
the refusal alone does not say the charge will never exist. The charge is looked up at
Cashfree first: adopted when it is there, cancelled only when it is not."""

from __future__ import annotations

import uuid

import pytest

from commdesk_billing.errors import GatewayRejected
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.payments import repository as payments_repo
from commdesk_billing.modules.payments.mandate_charges import earliest_schedule_date
from commdesk_billing.modules.payments.model import Payment
from tests.harness.stack import Stack
from tests.modules.mandates.helpers import active, lost_charge, sandbox_now

pytestmark = pytest.mark.slow


async def _lost_answer(
    subs: Stack, subs_client: SubscriptionsClient, m: dict[str, object], *, reached: bool
) -> Payment:
    """The CHARGE call's answer is lost (the row stays CREATED); with `reached`, the call
    did make the charge at Cashfree."""
    day = earliest_schedule_date(await sandbox_now(subs))
    p = await lost_charge(subs, subs_client, m, schedule=day, pack_code="pack_150")
    if reached:
        await subs_client.create_charge(
            subscription_id=str(m["subscription_id"]),
            payment_id=p.order_id,
            amount_paise=p.amount_paise,
            schedule_date=day,
            remarks="CommDesk credits pack_150",
        )
    r = await subs.sandbox.post(
        f"/_sandbox/subscriptions/{m['subscription_id']}/charge-refusal",
        json={"code": "payment_schedule_date_invalid"},
    )
    assert r.status_code == 200, r.text
    return p


async def _repeat(subs: Stack, subs_client: SubscriptionsClient, m: dict[str, object]) -> Payment:
    return await mandates.charge(
        subs.engine,
        subs_client,
        subs.settings,
        uuid.UUID(str(m["id"])),
        key="recharge-1",
        pack_code="pack_150",
        schedule=earliest_schedule_date(await sandbox_now(subs)),
    )


async def test_a_refused_repeat_adopts_the_charge_cashfree_holds(
    subs: Stack, subs_client: SubscriptionsClient
) -> None:
    m = await active(subs, subs.token())
    lost = await _lost_answer(subs, subs_client, m, reached=True)
    payment = await _repeat(subs, subs_client, m)
    assert payment.id == lost.id
    assert payment.status.value == "ACTIVE"
    [charge] = [
        c
        for c in await subs_client.list_payments(str(m["subscription_id"]))
        if c.payment_type == "CHARGE"
    ]
    assert (charge.payment_id, charge.payment_status) == (lost.order_id, "INITIALIZED")
    assert payment.cashfree_order_id == charge.cf_payment_id
    # The refusal was spent on the repeat: a later repeat answers the same payment.
    assert (await _repeat(subs, subs_client, m)).id == lost.id


async def test_a_refused_repeat_cancels_when_cashfree_has_no_charge(
    subs: Stack, subs_client: SubscriptionsClient
) -> None:
    m = await active(subs, subs.token())
    lost = await _lost_answer(subs, subs_client, m, reached=False)
    with pytest.raises(GatewayRejected) as refused:
        await _repeat(subs, subs_client, m)
    assert "payment_schedule_date_invalid" in str(refused.value)
    async with subs.engine.connect() as conn:
        after = await payments_repo.get(conn, lost.id)
    assert after is not None
    assert (after.status.value, after.failure_code) == (
        "CANCELLED",
        "payment_schedule_date_invalid",
    )
