"""`/payout/beneficiary` and `/payout/transfers`: Payouts V2 (cashfree.md §6.2), query
parameters for the look-ups as the SDK has them."""

from __future__ import annotations

import asyncio

from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import PAYOUT, Call, Reply, api
from commdesk_billing.gateway.sandbox.payouts.entities import (
    beneficiary_entity,
    transfer_entity,
)


def _query(call: Call) -> dict[str, str]:
    return dict(call.request.query_params)


def add_beneficiary(call: Call) -> Reply:
    return Reply(201, beneficiary_entity(call.sandbox.payouts.add_beneficiary(call.body)))


def fetch_beneficiary(call: Call) -> Reply:
    return Reply(200, beneficiary_entity(call.sandbox.payouts.beneficiary(_query(call))))


def remove_beneficiary(call: Call) -> Reply:
    removed = call.sandbox.payouts.remove_beneficiary(_query(call))
    return Reply(200, beneficiary_entity(removed, status="DELETED"))


async def create_transfer(call: Call) -> Reply:
    payouts = call.sandbox.payouts
    transfer, slow = payouts.create_transfer(call.body)
    answer = transfer_entity(transfer)  # as it was when received, however long we take
    if slow:
        # Cashfree's "25 s timeout" test account: the transfer exists at once, the answer
        # comes late, so a client that times out must ask for its status.
        await asyncio.sleep(payouts.settings.slow_answer_s)
    return Reply(200, answer)


def fetch_transfer(call: Call) -> Reply:
    return Reply(200, transfer_entity(call.sandbox.payouts.transfer(_query(call))))


routes = [
    Route(
        "/payout/beneficiary",
        api(add_beneficiary, rate="payout_beneficiary", realm=PAYOUT),
        methods=["POST"],
    ),
    Route(
        "/payout/beneficiary",
        api(fetch_beneficiary, rate="payout_beneficiary", realm=PAYOUT),
        methods=["GET"],
    ),
    Route(
        "/payout/beneficiary",
        api(remove_beneficiary, rate="payout_beneficiary", realm=PAYOUT),
        methods=["DELETE"],
    ),
    Route(
        "/payout/transfers",
        api(create_transfer, rate="payout_create_transfer", realm=PAYOUT),
        methods=["POST"],
    ),
    Route(
        "/payout/transfers",
        api(fetch_transfer, rate="payout_get_transfer", realm=PAYOUT),
        methods=["GET"],
    ),
]
