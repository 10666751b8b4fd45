"""What a Payouts V2 transfer's `status` and `status_code` mean for us (cashfree.md §13.3).

Cashfree's model gives no enum for either (free strings, CONFIRMED), and the code table is
secondary material (UNCONFIRMED), so this reads them tolerantly: an unknown in-flight status
means "keep asking", an unknown failure code means "a person looks at it", never "retry".
The local sandbox draws its failure codes from these same groups, so a test of a group
exercises exactly what the client will classify.
"""

from __future__ import annotations

from enum import StrEnum


class TransferStatus:
    RECEIVED = "RECEIVED"
    APPROVAL_PENDING = "APPROVAL_PENDING"
    QUEUED = "QUEUED"
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    MANUALLY_REJECTED = "MANUALLY_REJECTED"
    REVERSED = "REVERSED"
    # SUCCESS is final for the money sent but may still become REVERSED.
    TERMINAL = frozenset({SUCCESS, FAILED, REJECTED, MANUALLY_REJECTED, REVERSED})


# In flight: wait or poll, never initiate again.
IN_FLIGHT = frozenset({"RECEIVED", "SENT_TO_BANK", "SCHEDULED_FOR_NEXT_WORKINGDAY"})
# SUCCESS with the debit done and the credit still to be confirmed, then confirmed.
SENT_TO_BENEFICIARY = "SENT_TO_BENEFICIARY"
COMPLETED = "COMPLETED"
# Bank-side or transient: the same payout may go again later under a new transfer_id.
RETRYABLE = frozenset(
    {
        "BENE_BANK_DECLINED",
        "BANK_GATEWAY_ERROR",
        "REINITIALIZE_TRANSFER_LATER",
        "NPCI_UNAVAILABLE",
        "BENEFICIARY_BANK_OFFLINE",
        "IMPS_MODE_FAIL",  # again, but over NEFT
        "INSUFFICIENT_BALANCE",  # again once our payout balance is topped up
    }
)
# The destination is wrong: stop paying it and ask the payee for new details.
NEEDS_NEW_DETAILS = frozenset(
    {
        "INVALID_BENE_ACCOUNT_OR_IFSC",
        "INVALID_ACCOUNT_FAIL",
        "INVALID_IFSC_FAIL",
        "INVALID_BENE_VPA",
        "ACCOUNT_BLOCKED",
        "NRE_ACCOUNT_FAIL",
        "BENE_NAME_DIFFERS",
    }
)
# Risk, configuration, amount or limits: no automatic retry; operations decide.
NEEDS_REVIEW = frozenset(
    {
        "BENE_BLACKLISTED",
        "SUSPECTED_TRANSFER",
        "VELOCITY_CHECK_FAILED",
        "INVALID_MODE_FOR_PYID",
        "DISABLED_MODE",
        "DEST_LIMIT_REACHED",
        "INVALID_AMOUNT_FAIL",
    }
)
FAILURE_CODES = RETRYABLE | NEEDS_NEW_DETAILS | NEEDS_REVIEW


class Outcome(StrEnum):
    """What the owner of a payout does next."""

    IN_FLIGHT = "in_flight"  # wait for the webhook or ask again
    PAID = "paid"  # the money left; a reversal may still follow
    RETRY = "retry"  # failed for a passing reason: pay again under a new transfer_id
    NEW_DETAILS = "new_details"  # failed on the destination: freeze it, ask the payee
    REVIEW = "review"  # failed or rejected for a reason a person must look at
    REVERSED = "reversed"  # paid, then sent back by the beneficiary's bank


def outcome(status: str, status_code: str | None) -> Outcome:
    status = status.upper()
    code = (status_code or "").upper()
    if status == TransferStatus.SUCCESS:
        return Outcome.PAID
    if status == TransferStatus.REVERSED:
        return Outcome.REVERSED
    if status not in TransferStatus.TERMINAL:
        return Outcome.IN_FLIGHT
    if code in RETRYABLE:
        return Outcome.RETRY
    if code in NEEDS_NEW_DETAILS:
        return Outcome.NEW_DETAILS
    return Outcome.REVIEW
