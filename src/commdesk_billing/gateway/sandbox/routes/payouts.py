"""`/payout/beneficiary` and `/payout/transfers`: Payouts V2 (cashfree.md §6.2), query
parameters for the look-ups as the SDK has them."""

from __future__ import annotations

import asyncio

from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import PAYOUT, Call, Handler, Reply, api
from commdesk_billing.gateway.sandbox.payouts.entities import (
    beneficiary_entity,
    transfer_entity,
)
from commdesk_billing.gateway.sandbox.ratelimit import Endpoint


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


_ROUTES: tuple[tuple[str, str, Handler, Endpoint], ...] = (
    ("/payout/beneficiary", "POST", add_beneficiary, "payout_beneficiary"),
    ("/payout/beneficiary", "GET", fetch_beneficiary, "payout_beneficiary"),
    ("/payout/beneficiary", "DELETE", remove_beneficiary, "payout_beneficiary"),
    ("/payout/transfers", "POST", create_transfer, "payout_create_transfer"),
    ("/payout/transfers", "GET", fetch_transfer, "payout_get_transfer"),
)
routes = [
    Route(path, api(handler, rate=rate, realm=PAYOUT), methods=[method])
    for path, method, handler, rate in _ROUTES
]
