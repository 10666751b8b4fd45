"""Typed business errors. Each has a stable machine name and its own HTTP status, so an
expected conflict (not enough credits, a replayed key with another body) never looks like a
crash; the API turns them into RFC 9457 problem responses."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "domain_error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Request cannot be carried out"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not found"


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class InsufficientCredits(DomainError):
    code = "insufficient_credits"
    status = 409
    title = "Not enough credits"


class HoldNotActive(DomainError):
    code = "hold_not_active"
    status = 409
    title = "Hold is no longer active"


class HoldExpired(DomainError):
    code = "hold_expired"
    status = 409
    title = "Hold has expired"


class InvalidAmount(DomainError):
    code = "invalid_amount"
    status = 422
    title = "Invalid amount"


class IdempotencyMismatch(DomainError):
    """The key was used before for a different request."""

    code = "idempotency_key_reused"
    status = 422
    title = "Idempotency-Key was used with a different request"


class IdempotencyInProgress(DomainError):
    code = "idempotency_key_in_use"
    status = 409
    title = "A request with this Idempotency-Key is still being processed"


class LedgerInvariantError(Exception):
    """A posting that would break double entry: a programming error, never user input."""


class IdempotencyKeyRequired(DomainError):
    code = "idempotency_key_required"
    status = 400
    title = "Idempotency-Key header required"


class IdempotencyKeyInvalid(DomainError):
    code = "idempotency_key_invalid"
    status = 400
    title = "Idempotency-Key header is not valid"


class UnknownQueryParameter(DomainError):
    code = "unknown_query_parameter"
    status = 400
    title = "Unknown query parameter"


class InvalidCursor(DomainError):
    code = "invalid_cursor"
    status = 422
    title = "Cursor is not valid"


class UnknownPack(DomainError):
    code = "unknown_pack"
    status = 422
    title = "No such credit pack"


class TooManyOpenOrders(DomainError):
    code = "too_many_open_orders"
    status = 429
    title = "Too many unpaid orders"


class PaymentNotRetryable(DomainError):
    code = "payment_not_retryable"
    status = 409
    title = "This payment cannot be retried"


class BuyerStateConflict(DomainError):
    code = "buyer_state_conflicts_gstin"
    status = 422
    title = "The order's state is not the registered buyer's"


class PaymentNotCancellable(DomainError):
    code = "payment_not_cancellable"
    status = 409
    title = "This payment cannot be cancelled"


class GatewayUnavailable(DomainError):
    """Cashfree did not answer (or answered 5xx/429) after our retries. Safe to repeat the
    request with the same Idempotency-Key."""

    code = "gateway_unavailable"
    status = 503
    title = "Payment gateway unavailable"


class GatewayRateLimited(GatewayUnavailable):
    """Cashfree answered 429: repeat after `retry_after_s` (also the Retry-After header)."""

    code = "gateway_rate_limited"
    title = "Payment gateway is rate-limiting us"


class GatewayRejected(DomainError):
    code = "gateway_rejected"
    status = 502
    title = "Payment gateway refused the order"


class PaymentNotRefundable(DomainError):
    code = "payment_not_refundable"
    status = 409
    title = "This payment cannot be refunded"


class RefundExceedsRefundable(DomainError):
    """More than the unconsumed, unreserved part of the purchase; `refundable_paise` says
    how much can be refunded now."""

    code = "refund_exceeds_refundable"
    status = 422
    title = "Refund is larger than what can be refunded"


class DocumentPending(DomainError):
    code = "document_pending"
    status = 409
    title = "The document's PDF is not stored yet"


class StorageUnavailableError(DomainError):
    code = "storage_unavailable"
    status = 503
    title = "Document storage unavailable"


# --- Communities (read from CommDesk's MongoDB: modules/communities/directory.py) ---------


class InvalidCommunityId(DomainError):
    """Refused before MongoDB is asked: an id no community can have."""

    code = "invalid_community_id"
    status = 422
    title = "Community id is not valid"


class CommunityNotFound(NotFound):
    code = "community_not_found"
    title = "No such community"


class CommunitySuspended(DomainError):
    code = "community_suspended"
    status = 409
    title = "Community is suspended"


class CommunityRecordInvalid(DomainError):
    """CommDesk's record of the community does not have the shape billing relies on. Not
    the caller's doing and not fixed by retrying: a 5xx, so it alerts whoever owns the data."""

    code = "community_record_invalid"
    status = 502
    title = "Community record cannot be used"


class CommunityDirectoryUnavailable(DomainError):
    """MongoDB did not answer within BILLING_MONGODB_TIMEOUT_S (and the cache had nothing
    fresh). Nothing was changed: repeat after `retry_after_s` (the Retry-After header of
    every 503, problems.py)."""

    code = "community_directory_unavailable"
    status = 503
    title = "Community directory unavailable"


class SpendAlreadyReversed(DomainError):
    """A community spend is reversed at most once."""

    code = "spend_already_reversed"
    status = 409
    title = "This spend was already reversed"


class PartnerNotFound(NotFound):
    code = "partner_not_found"


class PartnerExists(DomainError):
    """A partner id is chosen once: creating it again is a conflict, not a change."""

    code = "partner_exists"
    status = 409
    title = "A partner with this id exists"


class PartnerInactive(DomainError):
    code = "partner_inactive"
    status = 409
    title = "This partner is inactive"


class AttributionOverlaps(DomainError):
    """A user is attributed to at most one partner at any instant."""

    code = "attribution_overlaps"
    status = 409
    title = "The user has an attribution in force within this window"


class PayeeNotFound(NotFound):
    code = "payee_not_found"


class PayeeExists(DomainError):
    """One payee per community or partner: creating it again is a conflict."""

    code = "payee_exists"
    status = 409
    title = "This community or partner is a payee already"


class PayoutAccountNotFound(NotFound):
    code = "payout_account_not_found"


class PayoutAccountInUse(DomainError):
    """The account (by its fingerprint) is another payee's current payout account: one
    account never collects for two payees."""

    code = "payout_account_in_use"
    status = 409
    title = "This account is another payee's payout account"


class PayoutBeneficiaryConflict(DomainError):
    """Cashfree holds the account (or our beneficiary id) in a way this service may not
    change: a beneficiary it never recorded, or one a current payout account names. A retry
    cannot help; nothing was changed here (support resolves it at Cashfree)."""

    code = "payout_beneficiary_conflict"
    status = 409
    title = "Cashfree holds this account under a beneficiary that cannot be used"


class PayoutsUnavailable(DomainError):
    """Payout accounts cannot be handled by this process now: Cashfree Payouts' credentials
    or the sealing keys are not configured. Nothing was changed."""

    code = "payouts_unavailable"
    status = 503
    title = "Payout accounts cannot be handled now"


class SponsorshipNotFound(NotFound):
    code = "sponsorship_not_found"


class MilestoneNotFound(NotFound):
    code = "milestone_not_found"


class InvalidMilestones(DomainError):
    """Milestones that do not add up to the sponsored amount, or too many."""

    code = "invalid_milestones"
    status = 422
    title = "Invalid milestones"


class SponsorshipNotFunded(DomainError):
    """The sponsor's payment has not arrived: nothing is held to deliver or release."""

    code = "sponsorship_not_funded"
    status = 409
    title = "Sponsorship not paid yet"


class MilestoneNotDelivered(DomainError):
    """A milestone is released only once the community has marked it delivered."""

    code = "milestone_not_delivered"
    status = 409
    title = "Milestone not delivered"


class MilestoneRefunded(DomainError):
    """The milestone's money is being, or was, refunded to the sponsor."""

    code = "milestone_refunded"
    status = 409
    title = "Milestone refunded"


class MilestoneReleased(DomainError):
    """The milestone was released already: its money is the community's."""

    code = "milestone_already_released"
    status = 409
    title = "Milestone already released"


class SettlementNotFound(NotFound):
    code = "settlement_not_found"


class SplitVendorNotFound(NotFound):
    """The community is not registered as an Easy Split vendor."""

    code = "split_vendor_not_found"


class SplitVendorAccountMissing(DomainError):
    """A vendor is registered with the community payee's current, verified payout account:
    there is none (no payee, suspended, or no verified account yet)."""

    code = "split_vendor_account_missing"
    status = 409
    title = "The community has no verified payout account to register"


class SplitVendorAccountCoolingOff(DomainError):
    """The community payee's current account replaced a verified one and is still in its
    cooling-off (`payouts_blocked_until`): Cashfree would settle split parts to it at once,
    so it is not sent before a settlement could pay it."""

    code = "split_vendor_account_cooling_off"
    status = 409
    title = "The community's payout account is still in its cooling-off"


class SplitSponsorshipNoRelease(DomainError):
    """A split sponsorship's money is settled by Cashfree to the community's vendor: its
    milestones are informational and nothing is released from escrow."""

    code = "sponsorship_split_no_release"
    status = 409
    title = "Split sponsorships are settled by Cashfree, not released"


class AutoRechargeMandateInvalid(DomainError):
    """Auto-recharge may name only the wallet owner's own mandate, pending its approval or
    active (a revoked, failed, expired or completed one cannot be charged)."""

    code = "auto_recharge_mandate_invalid"
    status = 422
    title = "This mandate cannot be used for auto-recharge"


class AutoRechargeInvalid(DomainError):
    """Auto-recharge settings that cannot work (no such pack, an amount outside the top-up
    limits)."""

    code = "auto_recharge_invalid"
    status = 422
    title = "Auto-recharge settings are not valid"


class UsageMeterNotFound(NotFound):
    code = "usage_meter_not_found"
    title = "No such usage meter"


class PriceVersionTooEarly(DomainError):
    """A new price version must take effect after the meter's latest version and after
    every event already rated for the meter (rated events are never re-rated)."""

    code = "price_version_too_early"
    status = 409
    title = "Price version would take effect too early"


class UsageWindowInvalid(DomainError):
    code = "usage_window_invalid"
    status = 422
    title = "Summary window is not valid"


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"


class SubscriptionPlanNotFound(NotFound):
    code = "subscription_plan_not_found"


class SubscriptionPlanInactive(DomainError):
    code = "subscription_plan_inactive"
    status = 409
    title = "The plan's latest version is no longer sold"


class SubscriptionMandateRequired(DomainError):
    """A plan priced in INR is charged on the member's own active UPI AutoPay / card mandate
    (cashfree.md §12.5), whose maximum per debit covers the plan's price."""

    code = "subscription_mandate_required"
    status = 422
    title = (
        "An INR plan needs the member's own active mandate covering its price; a credit "
        "plan takes none"
    )


class SubscriptionExists(DomainError):
    code = "subscription_exists"
    status = 409
    title = "The member already has a live subscription to this plan"


class SubscriptionNotActive(DomainError):
    code = "subscription_not_active"
    status = 409
    title = "The subscription is not in a state that allows this"


class PlanChangeRefused(DomainError):
    code = "plan_change_refused"
    status = 409
    title = "The plan cannot be changed to that plan"


class PlanChangePending(DomainError):
    """An INR subscription's upgrade waits for its prorated charge on the mandate (a day or
    more, cashfree.md §15): another change is refused until that one is paid or failed."""

    code = "plan_change_pending"
    status = 409
    title = "A plan change is already waiting for its payment"


class PlanChangeNeedsNewMandate(DomainError):
    """The plan's price is above what the subscription's mandate may debit (its maximum per
    debit; RBI, cashfree.md §15), or the mandate is no longer active: the member sets up a
    new mandate covering the price (and subscribes on it) instead."""

    code = "plan_change_needs_new_mandate"
    status = 409
    title = "The mandate does not cover that plan: set up a new mandate"


# --- mandates (UPI AutoPay / card standing instructions) -----------------------------------


class MandateAmountTooHigh(DomainError):
    """A UPI AutoPay or card mandate may debit at most ₹15,000 without the payer's extra
    authentication (RBI, cashfree.md §12.6/§15); a charge may not exceed the mandate's own
    maximum."""

    code = "mandate_amount_too_high"
    status = 422
    title = "Amount above the mandate's limit"


class MandateNotActive(DomainError):
    """Charges are raised only on an active mandate (authorised, not paused or revoked)."""

    code = "mandate_not_active"
    status = 409
    title = "The mandate is not active"


class MandateNotRevocable(DomainError):
    code = "mandate_not_revocable"
    status = 409
    title = "The mandate has already ended"


class AuditRangeInvalid(DomainError):
    """`from` must come before `to` when both are given (GET /v1/audit-logs)."""

    code = "audit_range_invalid"
    status = 422
    title = "Time range is not valid"


class PaymentBlocked(DomainError):
    """Fraud scoring refused the order (DESIGN §13); support reads why in the member's risk
    profile (`GET /v1/fraud/profiles/{user_id}`), never in this answer."""

    code = "payment_blocked"
    status = 403
    title = "This payment cannot be made"


class InvalidDeviceId(DomainError):
    code = "invalid_device_id"
    status = 422
    title = "X-Device-Id is malformed"


class ReviewAlreadyDecided(DomainError):
    code = "review_already_decided"
    status = 409
    title = "This review has already been decided otherwise"


class FraudListConflict(DomainError):
    code = "fraud_list_conflict"
    status = 409
    title = "The value is on the other list"


class InvalidListEntry(DomainError):
    code = "invalid_list_entry"
    status = 422
    title = "Invalid list entry"


class FindingNotFound(NotFound):
    code = "finding_not_found"
    title = "No such reconciliation finding"


class FindingStateConflict(DomainError):
    """A finding is explained from open only, and resolved from open or explained: a move
    from any other state (one already resolved, say) is refused, never applied twice."""

    code = "finding_state_conflict"
    status = 409
    title = "The finding is not in a state this move starts from"


class InvalidPeriod(DomainError):
    """A `from`/`to` query of the analytics routes that is missing, not a date, the wrong way
    round or longer than allowed."""

    code = "invalid_period"
    status = 400
    title = "Period is not valid"


class InvalidReportFormat(DomainError):
    """`format` of a report route is neither `json` nor `csv`."""

    code = "invalid_report_format"
    status = 400
    title = "Report format is not valid"


class WebhookEndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"


class WebhookDeliveryNotFound(NotFound):
    code = "webhook_delivery_not_found"


class EventNotFound(NotFound):
    code = "event_not_found"


class WebhookUrlRefused(DomainError):
    """An endpoint URL billing will not POST to (scheme, form, or a non-public address in
    production: no outbound request into our own network)."""

    code = "webhook_url_refused"
    status = 400
    title = "Webhook URL not allowed"


class WebhookEndpointDisabled(DomainError):
    code = "webhook_endpoint_disabled"
    status = 409
    title = "Webhook endpoint is disabled"


class WebhookSecretsUnavailable(DomainError):
    """No key to seal or open endpoint secrets (BILLING_WEBHOOK_SECRET_KEYS)."""

    code = "webhook_secrets_unavailable"
    status = 503
    title = "Webhook endpoints are not configured"


class InvalidPaymentFilter(DomainError):
    """A filter of the payments list (`status`, `method`, `created_from`/`created_to`,
    `limit`) that is not one this API takes; `parameter` names it."""

    code = "invalid_payment_filter"
    status = 400
    title = "Payment filter is not valid"


class InvalidExpand(DomainError):
    """`expand` names something a payment cannot be expanded with."""

    code = "invalid_expand"
    status = 400
    title = "Expansion is not valid"
