"""The catalog: every routed event has a template, every event renders (with all its
fields and with only the ones it must carry), amounts read as ₹ with paise and credits as
whole numbers, and outside text cannot break a header or the HTML."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from commdesk_billing import wiring
from commdesk_billing.modules.notifications import service
from commdesk_billing.modules.notifications.catalog import CATALOG
from commdesk_billing.modules.notifications.render import credits, inr, template_names
from tests.modules.notifications.samples import full, minimal


def _render(kind: str, payload: dict[str, Any]) -> Any:
    return service.rendered(kind, CATALOG[kind].payload.model_validate(payload))


def test_every_routed_event_has_a_template_and_every_template_is_used() -> None:
    routed = {t for q, t in wiring.ROUTES if q == "notifications.billing"}
    assert routed == set(CATALOG)
    assert {s.template for s in CATALOG.values()} == template_names()
    assert "notifications.billing" in wiring.fanout()["payment.credited"]
    assert "notifications.billing" in wiring.fanout()["settlement.paid"]
    assert set(full()) == set(minimal()) == set(CATALOG)


SUBJECTS = {
    "payment.credited": ("Receipt: ₹354.00 paid", "Receipt: ₹1.00 paid"),
    "refund.succeeded": ("Refund of ₹12,34,567.89 processed", "Refund of ₹0.01 processed"),
    "settlement.paid": ("Payout of ₹980.00 sent", "Payout of ₹100.00 sent"),
    "settlement.failed": ("Payout of ₹980.00 failed", "Payout of ₹100.00 failed"),
    "settlement.reversed": (
        "Payout of ₹980.00 was reversed by the bank",
        "Payout of ₹100.00 was reversed by the bank",
    ),
    "wallet.low_balance": (
        "Your credit balance is low: 150 credits left",
        "Your credit balance is low: 0 credits left",
    ),
    "auto_recharge.checkout_opened": ("Complete your recharge of ₹300.00",) * 2,
    "auto_recharge.notified": ("Upcoming automatic recharge of ₹300.00",) * 2,
    "auto_recharge.succeeded": ("Automatic recharge of ₹300.00 succeeded",) * 2,
    "auto_recharge.failed": ("Automatic recharge failed",) * 2,
    "auto_recharge.disabled": ("Automatic recharge was turned off",) * 2,
    "mandate.status_changed": (
        "Your payment mandate is now active",
        "Your payment mandate is now revoked",
    ),
    "subscription.renewed": ('Your plan "Community Pro" was renewed', "Your plan was renewed"),
    "subscription.renewal_failed": (
        'We could not renew your plan "Community Pro"',
        "We could not renew your plan",
    ),
    "subscription.cancelled": (
        'Your plan "Community Pro" was cancelled',
        "Your plan was cancelled",
    ),
}

# One line of each full rendering that carries its figures.
LINES = {
    "payment.credited": "We received your payment of ₹354.00 (GST ₹54.00 included) for the "
    "credit pack pack_300.\n3,200 credits were added to your wallet.",
    "refund.succeeded": "1,500 credits were taken back from your wallet.",
    "settlement.paid": "Settlement s-1 was paid: ₹980.00 (gross ₹1,000.00).\n"
    "Bank reference (UTR): UTR123",
    "settlement.failed": "could not be paid: the bank says the account is closed.",
    "settlement.reversed": "after it was paid: returned by the beneficiary bank.",
    "wallet.low_balance": "Your wallet has 150 credits left, below your threshold of 200 credits.",
    "auto_recharge.checkout_opened": "₹300.00 for 3,000 credits.\n\n"
    "Pay here: https://pay.example.test/checkout?s=abc&x=1",
    "auto_recharge.notified": "debited ₹300.00 for 3,000 credits on or after 9 Dec 2026.",
    "auto_recharge.succeeded": "3,000 credits were added to your wallet.",
    "auto_recharge.failed": "Your automatic recharge of ₹300.00 failed: insufficient funds in "
    "the payer's account.\nWe will try again at 8 Dec 2026, 10:00 IST.",
    "auto_recharge.disabled": "turned off for your wallet: 3 consecutive failures.",
    "mandate.status_changed": "is now active. It allows debits of up to ₹5,000.00 each.",
    "subscription.renewed": "renewed from 1 Dec 2026 to 1 Jan 2027.\n"
    "2,500 credits were charged to your wallet.",
    "subscription.renewal_failed": "failed (attempt 2).\nWe will try again at 2 Dec 2026, "
    "05:30 IST.\nYour plan stays active until 8 Dec 2026, 00:00 IST.",
    "subscription.cancelled": "It stays active until 1 Jan 2027, 00:00 IST.",
}

# What a minimal payload renders in place of the fields it left out.
MISSING = {
    "payment.credited": "for a credit top-up.\nYour wallet shows the credits it added.",
    "refund.succeeded": "No credits were taken back.\n\nRefund: r-1\nPayment: your purchase",
    "settlement.paid": "(gross not stated).\nBank reference (UTR): not given",
    "settlement.failed": "could not be paid: no reason was given.",
    "settlement.reversed": "after it was paid: no reason was given.",
    "wallet.low_balance": "Your wallet has 0 credits left.\n",
    "auto_recharge.checkout_opened": "opened a payment for you: ₹300.00.\n",
    "auto_recharge.notified": "debited ₹300.00 after the notice period.",
    "auto_recharge.succeeded": "The credits were added to your wallet.",
    "auto_recharge.failed": "Your automatic recharge failed: no reason was given.\n"
    "It will not be retried automatically.",
    "auto_recharge.disabled": "turned off for your wallet: no reason was given.",
    "mandate.status_changed": "Your payment mandate m-1 is now revoked.\n",
    "subscription.renewed": "renewed for the next period.\nIt was charged as your plan says.",
    "subscription.renewal_failed": "It will not be retried automatically.\n"
    "Please update your payment method to keep your plan.",
    "subscription.cancelled": "Your plan was cancelled. It has ended.",
}


@pytest.mark.parametrize("kind", sorted(CATALOG))
def test_each_event_renders_with_every_field_and_with_only_the_required_ones(kind: str) -> None:
    whole, bare = _render(kind, full()[kind]), _render(kind, minimal()[kind])
    assert (whole.subject, bare.subject) == SUBJECTS[kind]
    assert LINES[kind] in whole.text
    assert MISSING[kind] in bare.text
    for r in (whole, bare):
        assert "$" not in r.text and "None" not in r.text and "  " not in r.text
        assert (
            r.html.count("<p>") >= 1
            and f"<title>{r.subject}</title>".replace('"', "&quot;") in r.html
        )


def test_extra_fields_are_ignored_and_a_float_or_text_amount_refused() -> None:
    payload = {**minimal()["payment.credited"], "some_new_field": {"x": 1}}
    assert _render("payment.credited", payload).subject == "Receipt: ₹1.00 paid"
    for bad in (12.5, "100", True, -1):
        with pytest.raises(ValidationError):
            CATALOG["payment.credited"].payload.model_validate(
                {**minimal()["payment.credited"], "amount_paise": bad}
            )


def test_outside_text_cannot_inject_a_header_or_markup() -> None:
    payload = {
        **minimal()["subscription.cancelled"],
        "plan_name": "Pro\r\nBcc: everyone@example.test <script>alert(1)</script>",
    }
    r = _render("subscription.cancelled", payload)
    assert r.subject == (
        'Your plan "Pro Bcc: everyone@example.test <script>alert(1)</script>" was cancelled'
    )
    assert "\n" not in r.subject and "<script>" not in r.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.html


@given(st.integers(min_value=0, max_value=10**13))
def test_rupees_are_written_with_paise_and_read_back_exactly(paise: int) -> None:
    text = inr(paise)
    assert text.startswith("₹") and text[-3] == "."
    assert int(text[1:].replace(",", "").replace(".", "")) == paise


def test_amount_and_credit_formats() -> None:
    assert [inr(p) for p in (0, 5, 100, 123456, 12345678, 10**9)] == [
        "₹0.00",
        "₹0.05",
        "₹1.00",
        "₹1,234.56",
        "₹1,23,456.78",
        "₹1,00,00,000.00",
    ]
    assert [credits(n) for n in (1, 0, 1500, -20, 100000)] == [
        "1 credit",
        "0 credits",
        "1,500 credits",
        "-20 credits",
        "1,00,000 credits",
    ]


def test_settings_refuse_an_unsigned_webhook_and_unsafe_production_channels() -> None:
    from pydantic import SecretStr

    from commdesk_billing.config import Settings

    with pytest.raises(ValidationError, match="BILLING_NOTIFY_WEBHOOK_URL needs"):
        Settings(notify_webhook_url="http://127.0.0.1:9/notify")
    production: dict[str, Any] = {
        "env": "production",
        "jwt_secret": SecretStr("x" * 40),
        "database_url": "postgresql://u:p@127.0.0.1:5432/db",
        "seller_gstin": "29ABCDE1234F1Z5",
    }
    with pytest.raises(ValidationError, match="never sent without STARTTLS"):
        Settings(**production, smtp_user="u", smtp_password=SecretStr("pw"), smtp_starttls=False)
    with pytest.raises(ValidationError, match="must use https in production"):
        Settings(
            **production,
            notify_webhook_url="http://notify.example.test/hook",
            notify_webhook_secret=SecretStr("s" * 32),
        )


def test_payloads_as_their_producers_build_them_are_taken_and_read_well() -> None:
    """The shapes `payments/crediting.py`, `autorecharge/outcomes.py` and
    `settlements/transfers.py` announce, with the values they can really carry (a refused
    payload is dead-lettered: the member is never told)."""
    u = "7d0c7b1e-6b1a-4c43-9a65-1f8e7d9c0a11"
    # Production leaves BILLING_CASHFREE_CHECKOUT_URL unset (Cashfree's JS SDK opens the
    # checkout), so `outcomes.opened` announces no link.
    opened = {
        "recharge_id": "0a8a4c8e-3b61-4f8b-8a9f-5b2f8e4d6c21",
        "wallet_id": "5b2f8e4d-3b61-4f8b-8a9f-0a8a4c8e6c21",
        "user_id": u,
        "payment_id": "8a9f5b2f-3b61-4f8b-8a9f-0a8a4c8e6c21",
        "checkout_url": None,
        "amount_paise": 35400,
        "credits": 3200,
    }
    text = _render("auto_recharge.checkout_opened", opened).text
    assert "₹354.00 for 3,200 credits" in text and "Pay here" not in text
    assert "None" not in text
    # A custom amount is a credit top-up like a pack ('pack', 'custom', 'sponsorship').
    custom = {
        **full()["payment.credited"],
        "kind": "custom",
        "pack_code": None,
        "credits": 1000,
    }
    assert (
        "for a credit top-up.\n1,000 credits were added" in _render("payment.credited", custom).text
    )
    # `trigger.request` announces the low balance as it asks for the recharge: the member
    # has auto-recharge on, and must not be told to turn it on.
    low = {
        "wallet_id": "w1",
        "user_id": u,
        "available_credits": 150,
        "threshold": 200,
        "trigger_level": 260,
    }
    low_text = _render("wallet.low_balance", low).text
    assert "turn on automatic recharge" not in low_text
    assert "An automatic recharge has been asked for" in low_text
    assert (
        "turn on automatic recharge"
        in _render("wallet.low_balance", minimal()["wallet.low_balance"]).text
    )
    # `outcomes.disable` says how many failed in a row, not a `reason`.
    disabled = {"wallet_id": "w1", "user_id": u, "consecutive_failures": 3, "recharge_id": "r"}
    assert "turned off for your wallet: 3 recharges failed in a row." in (
        _render("auto_recharge.disabled", disabled).text
    )


def test_production_refuses_a_weak_webhook_secret_and_mail_in_the_clear() -> None:
    from pydantic import SecretStr

    from commdesk_billing.config import Settings

    production: dict[str, Any] = {
        "env": "production",
        "jwt_secret": SecretStr("x" * 40),
        "database_url": "postgresql://u:p@127.0.0.1:5432/db",
        "seller_gstin": "29ABCDE1234F1Z5",
        "cashfree_client_secret": SecretStr("c" * 40),
        "cashfree_base_url": "https://api.cashfree.example.test/pg",
        "cashfree_payout_base_url": "https://payout.cashfree.example.test",
        "cashfree_verification_base_url": "https://verify.cashfree.example.test",
        "public_base_url": "https://billing.example.test",
        "jwt_jwks_url": "https://id.example.test/.well-known/jwks.json",
    }
    relay = {"smtp_host": "smtp.example.test", "smtp_from": "Billing <billing@example.test>"}
    hook = {"notify_webhook_url": "https://notify.example.test/hook"}
    Settings(**production, **relay, **hook, notify_webhook_secret=SecretStr("s" * 32))
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(**production, **hook, notify_webhook_secret=SecretStr("short"))
    # Receipts, checkout links and names in the clear over the internet.
    with pytest.raises(ValidationError, match="STARTTLS"):
        Settings(**production, **relay, smtp_starttls=False)
    local = {**relay, "smtp_host": "127.0.0.1", "smtp_starttls": False}
    Settings(**production, **local)  # a relay on this host
    with pytest.raises(ValidationError, match="BILLING_SMTP_FROM"):
        Settings(**production, smtp_host="smtp.example.test")  # billing@commdesk.invalid
    with pytest.raises(ValidationError, match="BILLING_SMTP_USER and BILLING_SMTP_PASSWORD"):
        Settings(**relay, smtp_user="billing")  # a login that would silently be skipped
