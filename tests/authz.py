"""Who may call what: the one authorization matrix of the HTTP API.

Every `/v1` route has a row here (`tests/architecture/test_authz_matrix.py` fails on a route
without one), naming the callers that succeed; the refusals of the stack's routes are named
too, each with the one status the code answers. The tests of each module walk their rows
against every caller kind: `modules/wallet/test_api.py` in-process,
`modules/payments/test_orders_api.py` and `modules/invoices/test_invoices.py` against the
whole stack.
"""

from __future__ import annotations

# Who may call what. Each route maps a caller to the status it must get.
WALLET_ALLOW = {
    "GET /v1/wallets/me": {
        "owner",
        "other_member",
        "community_owner",
        "finance_admin",
        "support",
        "auditor",
    },
    "GET /v1/wallets/{wallet_id}": {"owner", "finance_admin", "support", "auditor", "service_read"},
    "GET /v1/wallets/{wallet_id}/transactions": {
        "owner",
        "finance_admin",
        "support",
        "auditor",
        "service_read",
    },
    "POST /v1/wallets/{wallet_id}/debits": {"owner", "service_debit"},
    "POST /v1/wallets/{wallet_id}/grants": {"finance_admin"},
    "POST /v1/wallets/{wallet_id}/holds": {"owner", "service_debit"},
    "GET /v1/holds/{hold_id}": {"owner", "finance_admin", "support", "auditor", "service_read"},
    "POST /v1/holds/{hold_id}/capture": {"owner", "service_debit"},
    "POST /v1/holds/{hold_id}/release": {"owner", "service_debit"},
}
# Auto-recharge: the owner sets it; whoever may read the wallet reads it and its decisions.
_WALLET_READERS = {"owner", "finance_admin", "support", "auditor", "service_read"}
AUTO_RECHARGE_ALLOW = {
    "PUT /v1/wallets/{wallet_id}/auto-recharge": {"owner"},
    "GET /v1/wallets/{wallet_id}/auto-recharge": _WALLET_READERS,
    "GET /v1/wallets/{wallet_id}/auto-recharge/events": _WALLET_READERS,
}
WALLET_CALLERS = [
    "owner",
    "other_member",
    "community_owner",
    "finance_admin",
    "support",
    "auditor",
    "service_read",
    "service_debit",
    "service_none",
    "anonymous",
    "forged",
]

# Who may call what, on the payments routes (the webhook route authenticates by signature).
PAYMENT_ALLOW = {
    "GET /v1/packs": {"owner", "other_member", "finance_admin", "support", "auditor", "service"},
    "POST /v1/payments/orders": {"owner", "other_member", "finance_admin", "support", "auditor"},
    "GET /v1/payments": {"owner", "other_member", "finance_admin", "support", "auditor"},
    "GET /v1/payments/{payment_id}": {"owner", "finance_admin", "support", "auditor"},
    "GET /v1/payments/{payment_id}/timeline": {"owner", "finance_admin", "support", "auditor"},
    "POST /v1/payments/{payment_id}/retry": {"owner"},
    "POST /v1/payments/{payment_id}/cancel": {"owner"},
    "POST /v1/payments/{payment_id}/sync": {"finance_admin", "support"},
}
STACK_CALLERS = [
    "owner",
    "other_member",
    "finance_admin",
    "support",
    "auditor",
    "service",
    "anonymous",
]

REFUND_INVOICE_ALLOW = {
    "POST /v1/payments/{payment_id}/refunds": {"finance_admin", "support"},
    "GET /v1/payments/{payment_id}/refunds": {"owner", "finance_admin", "support", "auditor"},
    "GET /v1/refunds/{refund_id}": {"owner", "finance_admin", "support", "auditor"},
    "GET /v1/invoices": {"owner", "other_member", "finance_admin", "auditor"},
    "GET /v1/invoices/{invoice_id}": {"owner", "finance_admin", "auditor"},
    "GET /v1/invoices/{invoice_id}/pdf": {"owner", "finance_admin", "auditor"},
}
# Everyone else's answer, as the code decides it. 403 where the caller's role may never do
# it (refunds.auth.may_see_payment, invoices.auth.may_list; a service on a route naming no
# scope for services: SERVICE_SCOPES); 404 where it is about someone else's payment or
# document, whose existence is not confirmed (refunds.auth.may_read, invoices.auth.may_read:
# support reads no documents). The buyer asking to refund is refused (403): self-service
# refunds are off by default.
FORBIDDEN, NOT_FOUND = 403, 404
REFUND_INVOICE_REFUSE = {
    "POST /v1/payments/{payment_id}/refunds": {
        "owner": FORBIDDEN,
        "other_member": NOT_FOUND,
        "auditor": FORBIDDEN,
        "service": FORBIDDEN,
    },
    "GET /v1/payments/{payment_id}/refunds": {"other_member": NOT_FOUND, "service": FORBIDDEN},
    "GET /v1/refunds/{refund_id}": {"other_member": NOT_FOUND, "service": FORBIDDEN},
    "GET /v1/invoices": {"support": FORBIDDEN, "service": FORBIDDEN},
    "GET /v1/invoices/{invoice_id}": {
        "other_member": NOT_FOUND,
        "support": NOT_FOUND,
        "service": FORBIDDEN,
    },
    "GET /v1/invoices/{invoice_id}/pdf": {
        "other_member": NOT_FOUND,
        "support": NOT_FOUND,
        "service": FORBIDDEN,
    },
}

# Who may call what, on the community economy's routes. Any person spends their own credits
# (a community_owner is a person too); a service needs `communities:spend` and names the
# member. Owners are the community's `owner_ids` in MongoDB (`owner_record`) or a
# community_owner token whose `communities` claim names it (`owner_claim`); one naming
# another community (`owner_elsewhere`) is nobody here. Everyone else: 403; no token: 401.
_PEOPLE = {
    "member",
    "other_member",
    "owner_record",
    "owner_claim",
    "owner_elsewhere",
    "finance_admin",
    "support",
    "auditor",
}
_OWNERS_AND_FINANCE = {"owner_record", "owner_claim", "finance_admin", "auditor"}
COMMUNITY_ALLOW = {
    "POST /v1/communities/{community_id}/spends": _PEOPLE | {"service_spend"},
    "GET /v1/communities/{community_id}/spends": _OWNERS_AND_FINANCE,
    "GET /v1/communities/{community_id}/earnings": _OWNERS_AND_FINANCE,
    "GET /v1/communities/{community_id}/fee-plan": _OWNERS_AND_FINANCE,
    "PUT /v1/communities/{community_id}/fee-plan": {"finance_admin"},
    "GET /v1/community-spends/{spend_id}": {"member"} | _OWNERS_AND_FINANCE,
    "POST /v1/community-spends/{spend_id}/reversal": {
        "owner_record",
        "owner_claim",
        "finance_admin",
    },
}
COMMUNITY_CALLERS = [*sorted(_PEOPLE), "service_spend", "service_none", "anonymous", "forged"]

# Who may call what, on the partners' routes. Finance sets partners up; the auditor reads
# their earnings too; only a service with `partners:attribute` says which partner brought a
# user. Everyone else: 403; no token or a forged one: 401.
PARTNER_ALLOW = {
    "POST /v1/partners": {"finance_admin"},
    "PUT /v1/partners/{partner_id}": {"finance_admin"},
    "POST /v1/partners/{partner_id}/attributions": {"service_attribute"},
    "GET /v1/partners/{partner_id}/earnings": {"finance_admin", "auditor"},
}
PARTNER_CALLERS = [
    "member",
    "community_owner",
    "finance_admin",
    "support",
    "auditor",
    "service_attribute",
    "service_none",
    "anonymous",
    "forged",
]

# Who may call what, on the payees' routes (for a community payee; a partner payee is
# finance_admin's to manage, `tests/modules/payees/test_api.py`). The community's owners
# (`owner_record`, `owner_claim`) create its payee and set its account; finance_admin may do
# anything; the auditor and support read and list. Everyone else: 403; no token: 401.
_PAYEE_READERS = {"owner_record", "owner_claim", "finance_admin", "auditor", "support"}
PAYEE_ALLOW = {
    "POST /v1/payees": {"owner_record", "owner_claim", "finance_admin"},
    "GET /v1/payees": {"finance_admin", "auditor", "support"},
    "GET /v1/payees/{payee_id}": _PAYEE_READERS,
    "PUT /v1/payees/{payee_id}/payout-account": {"owner_record", "owner_claim", "finance_admin"},
    "GET /v1/payees/{payee_id}/payout-account": _PAYEE_READERS,
    "POST /v1/payees/{payee_id}/suspend": {"finance_admin"},
    "POST /v1/payees/{payee_id}/reactivate": {"finance_admin"},
}
PAYEE_CALLERS = [
    "member",
    "owner_record",
    "owner_claim",
    "owner_elsewhere",
    "finance_admin",
    "support",
    "auditor",
    "service_none",
    "anonymous",
    "forged",
]
# Who may call what, on the sponsorships' routes. `sponsor` is the sponsor who paid the
# sponsorship under test, `other_sponsor` another sponsor; owners are the community's
# (`owner_record`: its MongoDB owner_ids; `owner_claim`: a community_owner token naming it).
# A caller who may not see a sponsorship is told it does not exist (404); one who may see
# it but not act on it, or whose role may never list, is refused (403); no token: 401.
SPONSORSHIP_ALLOW = {
    "POST /v1/sponsorships": {"sponsor", "other_sponsor"},
    "GET /v1/sponsorships": {"sponsor", "other_sponsor"},
    "GET /v1/sponsorships/{sponsorship_id}": {
        "sponsor",
        "owner_record",
        "owner_claim",
        "finance_admin",
        "auditor",
    },
    "GET /v1/communities/{community_id}/sponsorships": {
        "owner_record",
        "owner_claim",
        "finance_admin",
        "auditor",
    },
    "POST /v1/sponsorships/{sponsorship_id}/milestones/{seq}/deliver": {
        "owner_record",
        "owner_claim",
    },
    "POST /v1/sponsorships/{sponsorship_id}/milestones/{seq}/release": {
        "sponsor",
        "finance_admin",
    },
}
# The readers of a sponsorship: refused with 403 where they may not act, not 404.
SPONSORSHIP_READERS = SPONSORSHIP_ALLOW["GET /v1/sponsorships/{sponsorship_id}"]
SPONSORSHIP_CALLERS = [
    "sponsor",
    "other_sponsor",
    "member",
    "owner_record",
    "owner_claim",
    "owner_elsewhere",
    "finance_admin",
    "support",
    "auditor",
    "service",
    "anonymous",
]
# Who may call what, on the settlements' routes. Finance runs them; finance readers read any;
# a community payee's owners (`owner_record`, `owner_claim`) read their community's. Other
# people get 404 on a settlement or payee (ids are not probed); a service 403; no token 401.
SETTLEMENT_ALLOW = {
    "POST /v1/settlements/runs": {"finance_admin"},
    "GET /v1/payees/{payee_id}/settlements": {
        "finance_admin",
        "auditor",
        "owner_record",
        "owner_claim",
    },
    "GET /v1/settlements/{settlement_id}": {
        "finance_admin",
        "auditor",
        "owner_record",
        "owner_claim",
    },
    "GET /v1/settlements/{settlement_id}/statement": {
        "finance_admin",
        "auditor",
        "owner_record",
        "owner_claim",
    },
}
SETTLEMENT_CALLERS = [
    "member",
    "owner_record",
    "owner_claim",
    "owner_elsewhere",
    "finance_admin",
    "support",
    "auditor",
    "service",
    "anonymous",
    "forged",
]
# Who may call what, on the Easy Split vendor routes. finance_admin registers a community
# as a vendor (the KYC details are finance's); its owners (`owner_record`, `owner_claim`),
# finance_admin and the auditor read it. Everyone else: 403; no token or a forged one: 401.
# (The vendor settlement webhook route authenticates by Cashfree's signature: tested apart.)
SPLIT_VENDOR_ALLOW = {
    "POST /v1/communities/{community_id}/split-vendor": {"finance_admin"},
    "GET /v1/communities/{community_id}/split-vendor": {
        "owner_record",
        "owner_claim",
        "finance_admin",
        "auditor",
    },
}
SPLIT_VENDOR_CALLERS = [
    "member",
    "owner_record",
    "owner_claim",
    "owner_elsewhere",
    "finance_admin",
    "support",
    "auditor",
    "sponsor",
    "service",
    "anonymous",
    "forged",
]

# Who may call what, on the usage routes. A service reports usage with `usage:write`;
# finance manages the price book, staff and usage services read it; a wallet's usage is
# read by its owner, staff readers and a service with `usage:read`. Everyone else: 403; no
# token or a forged one: 401.
USAGE_ALLOW = {
    "POST /v1/usage/events": {"service_usage_write"},
    "POST /v1/usage/price-book": {"finance_admin"},
    "GET /v1/usage/price-book": {
        "finance_admin",
        "support",
        "auditor",
        "service_usage_read",
        "service_usage_write",
    },
    "GET /v1/usage/summary": {
        "owner",
        "finance_admin",
        "support",
        "auditor",
        "service_usage_read",
    },
}
USAGE_CALLERS = [
    "owner",
    "other_member",
    "community_owner",
    "finance_admin",
    "support",
    "auditor",
    "service_usage_read",
    "service_usage_write",
    "service_none",
    "anonymous",
    "forged",
]
# Who may call what, on the subscriptions' routes. `owner` holds the subscription under
# test; every person has a funded wallet. Plans are finance's to define and anyone's to
# read; people subscribe from their own wallet; the subscriber, finance and support cancel
# (support for a member, the runbook); only the subscriber changes plan. Everyone else: 403;
# no token or a forged one: 401.
_SUBSCRIBERS = {"owner", "other_member", "community_owner", "finance_admin", "support", "auditor"}
SUBSCRIPTION_ALLOW = {
    "POST /v1/subscription-plans": {"finance_admin"},
    "GET /v1/subscription-plans": {*_SUBSCRIBERS, "service"},
    "POST /v1/subscriptions": _SUBSCRIBERS,
    "GET /v1/subscriptions": _SUBSCRIBERS,
    "GET /v1/subscriptions/{subscription_id}": {"owner", "finance_admin", "support", "auditor"},
    "POST /v1/subscriptions/{subscription_id}/cancel": {"owner", "finance_admin", "support"},
    "POST /v1/subscriptions/{subscription_id}/change": {"owner"},
}
SUBSCRIPTION_CALLERS = [*sorted(_SUBSCRIBERS), "service", "anonymous", "forged"]
# Who may call what, on the mandates' routes (the subscription webhook route authenticates by
# Cashfree's signature: tested apart). Any person sets up and lists their own mandates; the
# owner and staff readers read one; only the owner revokes it. Everyone else: 403; no token:
# 401. Callers: STACK_CALLERS.
MANDATE_ALLOW = {
    "POST /v1/mandates": {"owner", "other_member", "finance_admin", "support", "auditor"},
    "GET /v1/mandates": {"owner", "other_member", "finance_admin", "support", "auditor"},
    "GET /v1/mandates/{mandate_id}": {"owner", "finance_admin", "support", "auditor"},
    "POST /v1/mandates/{mandate_id}/revoke": {"owner"},
}
# Who may call what, on the audit log (read-only: nobody edits it). The auditor and
# finance_admin read it; every other person and any service: 403; no token or a forged one:
# 401. Callers: AUDIT_CALLERS.
AUDIT_ALLOW = {
    "GET /v1/audit-logs": {"finance_admin", "auditor"},
}
AUDIT_CALLERS = [
    "member",
    "community_owner",
    "finance_admin",
    "support",
    "auditor",
    "service",
    "anonymous",
    "forged",
]

# Who may call what, on events out: finance_admin and services with `webhooks:manage`
# manage the webhook endpoints (and read their deliveries, replay one); finance_admin, the
# auditor and services with `events:read` (or `webhooks:manage`) pull the events. Every
# other person and any other service: 403; no token or a forged one: 401. Callers:
# EVENTS_CALLERS.
_WEBHOOK_MANAGERS = {"finance_admin", "service_webhooks"}
_EVENT_READERS = {"finance_admin", "auditor", "service_events", "service_webhooks"}
EVENTS_ALLOW = {
    "POST /v1/webhook-endpoints": _WEBHOOK_MANAGERS,
    "GET /v1/webhook-endpoints": _WEBHOOK_MANAGERS,
    "GET /v1/webhook-endpoints/{endpoint_id}": _WEBHOOK_MANAGERS,
    "PATCH /v1/webhook-endpoints/{endpoint_id}": _WEBHOOK_MANAGERS,
    "DELETE /v1/webhook-endpoints/{endpoint_id}": _WEBHOOK_MANAGERS,
    "POST /v1/webhook-endpoints/{endpoint_id}/rotate-secret": _WEBHOOK_MANAGERS,
    "GET /v1/webhook-endpoints/{endpoint_id}/deliveries": _WEBHOOK_MANAGERS,
    "POST /v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay": (_WEBHOOK_MANAGERS),
    "GET /v1/events": _EVENT_READERS,
    "GET /v1/events/{event_id}": _EVENT_READERS,
}
EVENTS_CALLERS = [
    "member",
    "community_owner",
    "finance_admin",
    "support",
    "auditor",
    "service_events",
    "service_webhooks",
    "service_other",
    "anonymous",
    "forged",
]

# The routes another CommDesk service may call, and the scopes that let it in (any one of
# them; `x-service-scopes` in the OpenAPI document, `security/service_scopes.py`). Every
# other route refuses every service token with 403, whatever scopes it carries
# (`tests/architecture/test_authz_matrix.py` walks them all).
SERVICE_SCOPES = {
    "GET /v1/packs": {"wallets:read"},
    "GET /v1/subscription-plans": {"wallets:read"},
    "GET /v1/wallets/{wallet_id}": {"wallets:read"},
    "GET /v1/wallets/{wallet_id}/transactions": {"wallets:read"},
    "GET /v1/holds/{hold_id}": {"wallets:read"},
    "GET /v1/wallets/{wallet_id}/auto-recharge": {"wallets:read"},
    "GET /v1/wallets/{wallet_id}/auto-recharge/events": {"wallets:read"},
    "POST /v1/wallets/{wallet_id}/debits": {"wallets:debit"},
    "POST /v1/wallets/{wallet_id}/holds": {"wallets:debit"},
    "POST /v1/holds/{hold_id}/capture": {"wallets:debit"},
    "POST /v1/holds/{hold_id}/release": {"wallets:debit"},
    "POST /v1/communities/{community_id}/spends": {"communities:spend"},
    "POST /v1/partners/{partner_id}/attributions": {"partners:attribute"},
    "POST /v1/usage/events": {"usage:write"},
    "GET /v1/usage/price-book": {"usage:read", "usage:write"},
    "GET /v1/usage/summary": {"usage:read"},
    "POST /v1/webhook-endpoints": {"webhooks:manage"},
    "GET /v1/webhook-endpoints": {"webhooks:manage"},
    "GET /v1/webhook-endpoints/{endpoint_id}": {"webhooks:manage"},
    "PATCH /v1/webhook-endpoints/{endpoint_id}": {"webhooks:manage"},
    "DELETE /v1/webhook-endpoints/{endpoint_id}": {"webhooks:manage"},
    "POST /v1/webhook-endpoints/{endpoint_id}/rotate-secret": {"webhooks:manage"},
    "GET /v1/webhook-endpoints/{endpoint_id}/deliveries": {"webhooks:manage"},
    "POST /v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay": {"webhooks:manage"},
    "GET /v1/events": {"events:read", "webhooks:manage"},
    "GET /v1/events/{event_id}": {"events:read", "webhooks:manage"},
}

# Fraud: finance and support read the queue, profiles and lists; finance alone decides a
# review and keeps the lists.
FRAUD_ALLOW = {
    "GET /v1/fraud/reviews": {"finance_admin", "support"},
    "POST /v1/fraud/reviews/{review_id}/decision": {"finance_admin"},
    "GET /v1/fraud/profiles/{user_id}": {"finance_admin", "support"},
    "GET /v1/fraud/lists": {"finance_admin", "support"},
    "POST /v1/fraud/lists": {"finance_admin"},
    "DELETE /v1/fraud/lists/{entry_id}": {"finance_admin"},
}

# Reconciliation: finance and the auditor read the findings; finance alone explains or
# resolves one.
RECONCILIATION_ALLOW = {
    "GET /v1/reconciliation/findings": {"finance_admin", "auditor"},
    "GET /v1/reconciliation/findings/{finding_id}": {"finance_admin", "auditor"},
    "POST /v1/reconciliation/findings/{finding_id}/explain": {"finance_admin"},
    "POST /v1/reconciliation/findings/{finding_id}/resolve": {"finance_admin"},
}

# Financial analytics, the trial balance and the GST summary: read by finance_admin and the
# auditor; every other person and any service: 403; no token or a forged one: 401.
# Callers: AUDIT_CALLERS.
ANALYTICS_ALLOW = {
    "GET /v1/analytics/summary": {"finance_admin", "auditor"},
    "GET /v1/analytics/daily": {"finance_admin", "auditor"},
    "GET /v1/analytics/payments": {"finance_admin", "auditor"},
    "GET /v1/analytics/trial-balance": {"finance_admin", "auditor"},
    "GET /v1/analytics/gst-summary": {"finance_admin", "auditor"},
}

# The billing profile: a person's own (every role but a service has one).
BILLING_PROFILE_ALLOW = {
    "GET /v1/billing-profile": {"member", "community_owner", "finance_admin", "support", "auditor"},
    "PUT /v1/billing-profile": {"member", "community_owner", "finance_admin", "support", "auditor"},
}
