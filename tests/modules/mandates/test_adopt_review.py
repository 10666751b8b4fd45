"""The refused repeat's adoption (`mandate_raise.raise_charge`) when the charge Cashfree holds
under our payment id is of another amount: it is not adopted as ours but held for review,
on the one payment row; the debit that follows credits nothing."""

from __future__ import annotations

import uuid

import pytest

from commdesk_billing.errors import GatewayRejected
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.payments import repository as payments_repo
from commdesk_billing.modules.payments.jobs import sync_open_payments
from commdesk_billing.modules.payments.mandate_charges import earliest_schedule_date
from tests.harness.stack import Stack
from tests.modules.mandates.helpers import (
    active,
    advance_to,
    debit_time,
    lost_charge,
    sandbox_now,
)

pytestmark = pytest.mark.slow


async def test_a_refused_repeat_holds_a_charge_of_another_amount_for_review(
    subs: Stack, subs_client: SubscriptionsClient
) -> None:
    tok = subs.token()
    m = await active(subs, tok)
    day = earliest_schedule_date(await sandbox_now(subs))
    raised_at = await sandbox_now(subs)
    lost = await lost_charge(subs, subs_client, m, schedule=day, pack_code="pack_150")
    # The first call made a charge at Cashfree, of another amount (a bug, a tamper).
    await subs_client.create_charge(
        subscription_id=str(m["subscription_id"]),
        payment_id=lost.order_id,
        amount_paise=lost.amount_paise + 100,
        schedule_date=day,
        remarks="CommDesk credits pack_150",
    )
    r = await subs.sandbox.post(
        f"/_sandbox/subscriptions/{m['subscription_id']}/charge-refusal",
        json={"code": "payment_schedule_date_invalid"},
    )
    assert r.status_code == 200, r.text
    with pytest.raises(GatewayRejected):
        await mandates.charge(
            subs.engine,
            subs_client,
            subs.settings,
            uuid.UUID(str(m["id"])),
            key="recharge-1",
            pack_code="pack_150",
            schedule=day,
        )
    async with subs.engine.connect() as conn:
        after = await payments_repo.get(conn, lost.id)
    assert after is not None and after.status.value == "REVIEW"
    n = await subs.scalar(
        "SELECT count(*) FROM payments WHERE user_id = :u AND channel = 'mandate'",
        u=after.user_id,
    )
    assert n == 1
    # The debit of the other amount comes: nothing is credited on it.
    await advance_to(subs, debit_time(raised_at, day))
    await sync_open_payments(subs.engine, subs.settings)
    async with subs.engine.connect() as conn:
        later = await payments_repo.get(conn, lost.id)
    assert later is not None and later.status.value == "REVIEW"
    assert (await subs.wallet(tok))["available_credits"] == 0
