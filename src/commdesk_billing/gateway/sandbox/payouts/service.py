"""What the Payouts side does: beneficiaries, bank-account verification, and the transfer state
machine with the webhooks it sends.

Transfer (cashfree.md §13.2, §13.3): RECEIVED -> PENDING (SENT_TO_BANK) -> SUCCESS
(SENT_TO_BENEFICIARY, webhook TRANSFER_SUCCESS) -> SUCCESS (COMPLETED, webhook
TRANSFER_ACKNOWLEDGED) [-> REVERSED, webhook TRANSFER_REVERSED]; or PENDING -> FAILED
(TRANSFER_FAILED); or RECEIVED -> REJECTED (TRANSFER_REJECTED). Each step is due at a time
on the sandbox clock, so `/_sandbox/clock` can move a long-pending transfer on without a wait;
due steps run in the background every `payout_tick_s` and before every Payouts call.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
from datetime import datetime, timedelta
from typing import Any

from commdesk_billing.gateway.payout_codes import NEEDS_REVIEW
from commdesk_billing.gateway.sandbox.background import Background
from commdesk_billing.gateway.sandbox.config import PayoutFaults, SandboxConfig
from commdesk_billing.gateway.sandbox.errors import CashfreeError, bad_request, not_found
from commdesk_billing.gateway.sandbox.payouts import bank, validation
from commdesk_billing.gateway.sandbox.payouts.entities import transfer_webhook
from commdesk_billing.gateway.sandbox.payouts.settings import PayoutSettings
from commdesk_billing.gateway.sandbox.payouts.store import (
    Beneficiary,
    Instrument,
    PayoutStore,
    Plan,
    Transfer,
    Verification,
)
from commdesk_billing.gateway.sandbox.webhooks import Event, Notifier, event_key
from commdesk_billing.gateway.sandbox.wire import Clock, dumps, ist_local_text

PAYOUT_WEBHOOK_VERSION = "2024-01-01"
# Risk and configuration refusals, and a short balance, end REJECTED rather than FAILED:
# Cashfree refused to send them at all (the docs' REJECTED sample is INVALID_MODE_FOR_PYID).
REJECTED_CODES = (NEEDS_REVIEW - {"DEST_LIMIT_REACHED", "INVALID_AMOUNT_FAIL"}) | {
    "INSUFFICIENT_BALANCE"
}
BANK_MODES = ("banktransfer", "imps", "neft", "rtgs")


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


class PayoutSandbox:
    def __init__(self, config: SandboxConfig, *, clock: Clock, background: Background) -> None:
        self.config = config
        self.clock = clock
        self.background = background
        self.faults = PayoutFaults()
        self.settings = PayoutSettings.from_config(config)
        self.rng = random.Random(config.seed)  # fault dice of this side only
        self.store = PayoutStore()
        self.notifier = Notifier(
            secret=config.payout_client_secret,
            default_url=config.payout_webhook_url,
            retry_schedule_s=config.webhook_retry_schedule_s,
            timeout_s=config.webhook_timeout_s,
            faults=self.faults,
            rng=self.rng,
            background=background,
            version=PAYOUT_WEBHOOK_VERSION,
        )

    async def start(self) -> None:
        await self.notifier.start()
        self.background.spawn(self._tick_forever())

    async def close(self) -> None:
        await self.notifier.close()

    # Beneficiaries --------------------------------------------------------------------

    def add_beneficiary(self, body: Any) -> Beneficiary:
        req = validation.new_beneficiary(body)
        if req.beneficiary_id in self.store.beneficiaries:
            raise CashfreeError(
                409, "beneficiary_id_already_exists", "beneficiary_id : already exists"
            )
        if self.store.beneficiary_for(req.instrument) is not None:
            raise CashfreeError(
                409,
                "beneficiary_already_exists",
                "a beneficiary with this bank account and IFSC or VPA already exists",
            )
        inst = req.instrument
        invalid = (
            inst.bank_account_number is not None
            and bank.account_check(inst.bank_account_number, inst.bank_ifsc or "")[0] == "INVALID"
        )
        bene = Beneficiary(
            beneficiary_id=req.beneficiary_id,
            name=req.name,
            instrument=inst,
            contact=req.contact,
            status="INVALID" if invalid else "VERIFIED",
            added_on=self.clock.now(),
        )
        self.store.beneficiaries[bene.beneficiary_id] = bene
        return bene

    def beneficiary(self, params: dict[str, str]) -> Beneficiary:
        bene_id = params.get("beneficiary_id")
        account, ifsc = params.get("bank_account_number"), params.get("bank_ifsc")
        if bene_id:
            found = self.store.beneficiaries.get(bene_id)
        elif account and ifsc:
            found = self.store.beneficiary_for(Instrument(account, ifsc, None))
        else:
            raise bad_request(
                "beneficiary_id_missing",
                "beneficiary_id : is missing (or give bank_account_number and bank_ifsc)",
            )
        if found is None:
            raise not_found("beneficiary_not_found", "beneficiary does not exist")
        return found

    def remove_beneficiary(self, params: dict[str, str]) -> Beneficiary:
        if not params.get("beneficiary_id"):
            raise bad_request("beneficiary_id_missing", "beneficiary_id : is missing")
        bene = self.beneficiary(params)
        # Gone for good: its id and its account may be added again afterwards.
        del self.store.beneficiaries[bene.beneficiary_id]
        return bene

    # Bank-account verification (Secure ID BAV V2) ---------------------------------------

    def verify_bank_account(self, body: Any) -> Verification:
        req = validation.new_verification(body)
        status, code = bank.account_check(req.bank_account, req.ifsc)
        valid = status == "VALID"
        at_bank = bank.name_at_bank(req.bank_account, req.ifsc, req.name) if valid else None
        score, result = bank.name_match(req.name, at_bank) if req.name and at_bank else (None, None)
        known_ifsc = code != "INVALID_IFSC"
        answer: dict[str, Any] = {
            "name_at_bank": at_bank,
            "bank_name": bank.bank_name(req.ifsc) if known_ifsc else None,
            "utr": _digits(12) if valid else None,
            "city": "MUMBAI" if known_ifsc else None,
            "branch": f"SANDBOX BRANCH {req.ifsc[5:]}" if known_ifsc else None,
            "micr": int(req.ifsc[5:]) if known_ifsc and req.ifsc[5:].isdigit() else None,
            "name_match_score": score,
            "name_match_result": result,
            "account_status": status,
            "account_status_code": code,
            "ifsc_details": {
                "bank": bank.bank_name(req.ifsc),
                "ifsc": req.ifsc,
                "branch": f"SANDBOX BRANCH {req.ifsc[5:]}",
                "city": "MUMBAI",
                "state": "MAHARASHTRA",
            }
            if known_ifsc
            else None,
        }
        verification = Verification(
            reference_id=self.store.next_reference_id(),
            user_id=req.user_id,
            bank_account=req.bank_account,
            ifsc=req.ifsc,
            name_given=req.name or "",
            answer=answer,
        )
        self.store.verifications[verification.reference_id] = verification
        return verification

    def verification(self, params: dict[str, str]) -> Verification:
        reference, user_id = params.get("reference_id"), params.get("user_id")
        if reference:
            found = self.store.verifications.get(int(reference)) if reference.isdigit() else None
        elif user_id:
            mine = [v for v in self.store.verifications.values() if v.user_id == user_id]
            found = mine[-1] if mine else None
        else:
            raise bad_request("reference_id_missing", "reference_id or user_id is needed")
        if found is None:
            raise not_found("verification_not_found", "no verification with this reference")
        return found

    # Transfers ------------------------------------------------------------------------

    def create_transfer(self, body: Any) -> tuple[Transfer, bool]:
        """The new transfer, and whether its answer is to be slow (the timeout test account)."""
        req = validation.new_transfer(body)
        if req.transfer_id in self.store.transfers:
            # Every repeat is refused, same details or not (README): Cashfree keeps a
            # transfer_id unique, and the caller asks for the status of the one it has.
            raise CashfreeError(
                409, "transfer_id_already_exists", "transfer_id : a transfer with it exists"
            )
        if req.beneficiary_id is not None:
            found = self.store.beneficiaries.get(req.beneficiary_id)
            if found is None:
                raise not_found("beneficiary_not_found", "beneficiary does not exist")
            instrument = found.instrument
        else:
            assert req.inline_instrument is not None
            instrument = req.inline_instrument
        script = bank.transfer_script(
            instrument.bank_account_number, instrument.bank_ifsc, instrument.vpa
        )
        now = self.clock.now()
        fingerprint = hashlib.sha256(
            dumps([req.amount_paise, req.mode, req.beneficiary_id, str(instrument)])
        ).hexdigest()
        transfer = Transfer(
            transfer_id=req.transfer_id,
            cf_transfer_id=self.store.next_cf_transfer_id(),
            beneficiary_id=req.beneficiary_id,
            instrument=instrument,
            amount_paise=req.amount_paise,
            currency=req.currency,
            mode=req.mode,
            remarks=req.remarks,
            fundsource_id=req.fundsource_id or "CASHFREE_1",
            added_on=now,
            plan=self._plan(req.mode, instrument, script),
            request_fingerprint=fingerprint,
            next_at=now + timedelta(seconds=self.settings.step_s),
        )
        self.store.transfers[transfer.transfer_id] = transfer
        self.store.by_cf_id[transfer.cf_transfer_id] = transfer.transfer_id
        return transfer, script.slow_answer

    def _plan(self, mode: str, instrument: Instrument, script: bank.TransferScript) -> Plan:
        faults = self.faults
        wrong_mode = (mode == "upi" and instrument.vpa is None) or (
            mode in BANK_MODES and instrument.bank_account_number is None
        )
        if wrong_mode:
            return Plan("REJECTED", "INVALID_MODE_FOR_PYID", 0.0, None)
        pending: float | None = {
            None: 0.0,
            "for_a_while": self.settings.pending_s,
            "for_ever": None,
        }[script.pending]
        if pending is not None:
            pending += faults.pending_extra_s
        if faults.fail_transfers > 0:
            faults.fail_transfers -= 1
            code = faults.fail_status_code
            status = "REJECTED" if code in REJECTED_CODES else "FAILED"
            return Plan(status, code, pending, None)
        if script.status == "FAILED":
            return Plan("FAILED", script.status_code, pending, None)
        reverse = script.reversed_code
        if faults.reverse_transfers > 0:
            faults.reverse_transfers -= 1
            reverse = faults.reverse_status_code
        return Plan("SUCCESS", None, pending, reverse)

    def transfer(self, params: dict[str, str]) -> Transfer:
        transfer_id, cf_id = params.get("transfer_id"), params.get("cf_transfer_id")
        if not transfer_id and not cf_id:
            raise bad_request("transfer_id_missing", "transfer_id or cf_transfer_id is needed")
        if cf_id and not transfer_id:
            transfer_id = self.store.by_cf_id.get(cf_id)
        found = self.store.transfers.get(transfer_id or "")
        if found is None or (cf_id and found.cf_transfer_id != cf_id):
            raise not_found("transfer_not_found", "transfer does not exist")
        return found

    # The clock ------------------------------------------------------------------------

    def tick(self) -> None:
        """Run every step due by now, earliest first (so webhooks go out in time order)."""
        now = self.clock.now()
        while True:
            due = [t for t in self.store.transfers.values() if t.next_at and t.next_at <= now]
            if not due:
                return
            transfer = min(due, key=lambda t: t.next_at or now)
            self._step(transfer)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.payout_tick_s)
            self.tick()

    def _step(self, transfer: Transfer) -> None:
        due = transfer.next_at
        assert due is not None
        plan = transfer.plan
        transfer.next_at = None
        transfer.updated_on = due
        if transfer.status == "RECEIVED" and plan.status == "REJECTED":
            self._end(transfer, "REJECTED", plan.status_code or "", "TRANSFER_REJECTED")
        elif transfer.status == "RECEIVED":
            transfer.status, transfer.status_code = "PENDING", "SENT_TO_BANK"
            if plan.pending_s is not None:
                transfer.next_at = self._after(due, self.settings.step_s + plan.pending_s)
        elif transfer.status == "PENDING" and plan.status == "FAILED":
            self._end(transfer, "FAILED", plan.status_code or "", "TRANSFER_FAILED")
        elif transfer.status == "PENDING":
            transfer.utr = "SANDBOXUTR" + _digits(12)
            self._end(transfer, "SUCCESS", "SENT_TO_BENEFICIARY", "TRANSFER_SUCCESS")
            transfer.next_at = self._after(due, self.settings.step_s)
        elif transfer.status_code == "SENT_TO_BENEFICIARY":
            self._end(transfer, "SUCCESS", "COMPLETED", "TRANSFER_ACKNOWLEDGED")
            if plan.reverse_code:
                transfer.next_at = self._after(due, self.settings.reversal_s)
        elif transfer.status == "SUCCESS" and plan.reverse_code:
            self._end(transfer, "REVERSED", plan.reverse_code, "TRANSFER_REVERSED")

    @staticmethod
    def _after(due: datetime, seconds: float) -> datetime:
        # From when the step was due, not from now: a clock moved far ahead runs every step
        # that fell due in between, in order.
        return due + timedelta(seconds=seconds)

    def _end(self, transfer: Transfer, status: str, code: str, event_type: str) -> None:
        transfer.status, transfer.status_code = status, code
        body = transfer_webhook(transfer, event_type, ist_local_text(self.clock.now()))
        event = Event(
            type=event_type,
            body=dumps(body),
            idempotency_key=event_key(event_type, transfer.cf_transfer_id, code),
            subject_id=transfer.transfer_id,
            entity_id=transfer.cf_transfer_id,
        )
        self.notifier.publish(event, None)
