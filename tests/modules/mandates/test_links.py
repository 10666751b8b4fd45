"""Where a member is sent to authorise a mandate, and what the configuration may say."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from commdesk_billing.config import Environment, Settings
from commdesk_billing.modules.mandates.model import Mandate, MandateStatus
from commdesk_billing.modules.mandates.schemas import MandateOut
from commdesk_billing.modules.mandates.service import authorization_url


def _mandate(status: MandateStatus) -> Mandate:
    now = datetime.now(UTC)
    return Mandate(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        idempotency_key="k",
        request_hash="h",
        subscription_id="cdbm_x",
        cf_subscription_id=None,
        session_id="subs_session/1",
        max_amount_paise=50_000,
        customer_phone="9876543210",
        valid_until=None,
        status=status,
        cashfree_status=None,
        auth_status=None,
        auth_reference=None,
        payment_method=None,
        revoked_by=None,
        refreshed_at=None,
        created_at=now,
        updated_at=now,
    )


def test_the_configured_page_gets_the_session_and_the_sandbox_page_is_the_default() -> None:
    pending = _mandate(MandateStatus.PENDING)
    own = Settings(mandate_authorize_url="https://app.example/mandate?s={subscription_session_id}")
    assert authorization_url(own, pending) == "https://app.example/mandate?s=subs_session%2F1"
    local = authorization_url(Settings(), pending)
    assert local is not None and "subscription_session_id=subs_session%2F1" in local
    assert authorization_url(own, _mandate(MandateStatus.ACTIVE)) is None


def test_production_without_a_page_sends_no_sandbox_link_but_the_session() -> None:
    settings = Settings.model_construct(
        env=Environment.production, mandate_authorize_url=None, cashfree_base_url="x"
    )
    pending = _mandate(MandateStatus.PENDING)
    assert authorization_url(settings, pending) is None
    shown = MandateOut.of(pending, None)
    assert shown.subscription_session_id == "subs_session/1"
    assert MandateOut.of(_mandate(MandateStatus.ACTIVE), None).subscription_session_id is None


@pytest.mark.parametrize(
    "url",
    ["https://app.example/mandate", "ftp://x/{subscription_session_id}", "javascript:alert(1)"],
)
def test_a_page_without_the_session_placeholder_or_not_http_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="mandate_authorize_url"):
        Settings(mandate_authorize_url=url)
