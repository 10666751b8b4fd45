"""`/verification/bank-account…`: Secure ID bank-account verification V2 (cashfree.md §13.4),
with the Payouts app's credentials and no `x-api-version` (README)."""

from __future__ import annotations

from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import VERIFICATION, Call, Reply, api
from commdesk_billing.gateway.sandbox.payouts.entities import verification_entity


def verify_sync(call: Call) -> Reply:
    return Reply(200, verification_entity(call.sandbox.payouts.verify_bank_account(call.body)))


def fetch(call: Call) -> Reply:
    found = call.sandbox.payouts.verification(dict(call.request.query_params))
    return Reply(200, verification_entity(found))


routes = [
    Route(
        "/verification/bank-account/sync",
        api(verify_sync, rate="bank_account_verification", realm=VERIFICATION),
        methods=["POST"],
    ),
    Route(
        "/verification/bank-account",
        api(fetch, rate="bank_account_verification", realm=VERIFICATION),
        methods=["GET"],
    ),
]
