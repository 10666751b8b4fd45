"""A worker SIGKILLed after the transfer call reached Cashfree and before its transaction
committed (the settlement's attempt still `new`, the message not acknowledged): the next
worker's create under the same `transfer_id` is answered 409 and folded into the transfer
Cashfree holds. Exactly one transfer exists at the sandbox, and the settlement is paid once.

The worker is a real `commdesk-billing worker` process; Cashfree's sandbox test account
`34978321547298` / `KKBK0000001` makes the transfer at once but answers its create only
after `slow_answer_s`, the window in which the worker is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from commdesk_billing import wiring
from commdesk_billing.gateway.sandbox.config import DEV_PAYOUT_CLIENT_ID, DEV_PAYOUT_CLIENT_SECRET
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.settlements import invariants
from tests.harness.faults import Recorder
from tests.harness.stack import StackFactory
from tests.modules.settlements.conftest import PAYOUT_STEP_S, TERMS
from tests.modules.settlements.helpers import (
    Payouts,
    earn,
    make_payee,
    scalar,
    settle_run,
    wait_status,
)

SLOW_ANSWER = ("34978321547298", "KKBK0000001")


@pytest.mark.slow
async def test_a_worker_killed_between_the_transfer_call_and_its_commit_pays_once(
    stack_factory: StackFactory, faults: Recorder
) -> None:
    # No worker in-process: the one that dies is a process of its own.
    stack = await stack_factory(worker=False, **TERMS)
    s = stack.settings
    async with httpx.AsyncClient(
        base_url=stack.sandbox_url,
        timeout=30,
        headers={"x-client-id": DEV_PAYOUT_CLIENT_ID, "x-client-secret": DEV_PAYOUT_CLIENT_SECRET},
    ) as control_client:
        payouts = Payouts(control_client)
        await payouts.configure(
            webhook_url=f"{stack.api_url}/v1/webhooks/cashfree-payouts",
            step_s=PAYOUT_STEP_S,
            slow_answer_s=10,
        )
        payee = await make_payee(stack.engine, s, bank=SLOW_ANSWER)
        await earn(stack.engine, payee, 20_000)
        [outcome] = await settle_run(
            stack.engine,
            s,
            by="test",
            payee_id=payee.id,
            period=f"t:{uuid.uuid4().hex}",
            cut_off=datetime.now(UTC),
        )
        assert outcome.settlement is not None
        settlement_id = outcome.settlement.id
        transfer_id = f"stl{settlement_id.hex}a1"
        assert s.cashfree_payout_client_secret is not None
        env = {
            **os.environ,
            "BILLING_DATABASE_URL": s.database_url,
            "BILLING_RABBITMQ_URL": s.rabbitmq_url,
            "BILLING_RABBITMQ_QUEUE_PREFIX": s.rabbitmq_queue_prefix,
            "BILLING_RETRY_DELAYS_S": "[0.2, 0.4, 0.8]",
            "BILLING_CASHFREE_PAYOUT_BASE_URL": s.cashfree_payout_base_url,
            "BILLING_CASHFREE_VERIFICATION_BASE_URL": s.cashfree_verification_base_url,
            "BILLING_CASHFREE_PAYOUT_CLIENT_ID": DEV_PAYOUT_CLIENT_ID,
            "BILLING_CASHFREE_PAYOUT_CLIENT_SECRET": DEV_PAYOUT_CLIENT_SECRET,
            # Longer than the slow answer: the worker is still waiting when it dies.
            "BILLING_CASHFREE_PAYOUT_TIMEOUT_S": "30",
            "BILLING_LOG_JSON": "false",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "commdesk_billing.cli", "worker", env=env
        )
        try:
            deadline = time.monotonic() + 60
            while not await payouts.transfers({transfer_id}):
                assert time.monotonic() < deadline, "the worker never sent the transfer"
                assert proc.returncode is None, "the worker exited"
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        # Cashfree has the transfer; our books do not know it was sent.
        attempt_status = "SELECT status FROM settlement_transfers WHERE transfer_id = :t"
        assert await scalar(stack.engine, attempt_status, t=transfer_id) == "new"
        async with wiring.worker(s, engine=stack.engine):
            await wait_status(stack.engine, settlement_id, {"processing"})
            await payouts.advance(3 * PAYOUT_STEP_S)
            await wait_status(stack.engine, settlement_id, {"paid"})
        everything = await control_client.get("/_sandbox/payouts")
        ours = [
            t
            for t in everything.json()["transfers"]
            if t["transfer_id"].startswith(f"stl{settlement_id.hex}")
        ]
        paid_journals = await scalar(
            stack.engine,
            "SELECT count(*) FROM ledger_journals WHERE idempotency_key = :k",
            k=f"settlement:{settlement_id}:paid",
        )
        faults.record(
            "worker SIGKILLed between a payout's create call and its commit",
            injected=1,
            what="the transfer made at Cashfree, its answer not yet back; the worker killed",
            lost=0 if ours else 1,
            twice=max(0, len(ours) - 1) + max(0, int(paid_journals) - 1),
            outcome="the next worker's create is answered 409 and folded: one transfer, paid once",
        )
        assert [(t["transfer_id"], t["status"]) for t in ours] == [(transfer_id, "SUCCESS")]
        assert paid_journals == 1
        # Cashfree's webhooks echo the account number: kept masked, never whole.
        kept = await scalar(
            stack.engine,
            "SELECT string_agg(convert_from(raw_body, 'UTF8'), ' ') FROM payout_webhooks",
        )
        assert kept and "XXXX" + SLOW_ANSWER[0][-4:] in kept and SLOW_ANSWER[0] not in kept
        report = await verify_ledger(stack.engine, checks=list(invariants.CHECKS))
        assert report.ok, [str(f) for f in report.findings]
