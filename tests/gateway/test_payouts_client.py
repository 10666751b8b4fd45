"""Our Payouts client against the sandbox over real HTTP on loopback: every call, its typed
errors, the transfer's outcomes, one transfer per transfer_id whatever happens, and payout
webhooks read by our verifier (forgeries refused)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from commdesk_billing.config import Settings
from commdesk_billing.gateway.errors import (
    CashfreeAuthError,
    CashfreeConflict,
    CashfreeNotFound,
    CashfreeRateLimited,
    CashfreeRejected,
    CashfreeUnavailable,
)
from commdesk_billing.gateway.factory import payouts_client
from commdesk_billing.gateway.payout_codes import Outcome
from commdesk_billing.gateway.payout_models import Transfer, mask
from commdesk_billing.gateway.payout_webhooks import Refused, read_transfer_webhook
from commdesk_billing.gateway.payouts import CashfreePayoutsClient, redact
from commdesk_billing.gateway.sandbox import create_sandbox_app
from commdesk_billing.gateway.signature import sign
from commdesk_billing.telemetry.metrics import GATEWAY_CALLS
from tests.gateway.sandbox.conftest import (
    CLIENT_SECRET,
    PAYOUT_CLIENT_ID,
    PAYOUT_CLIENT_SECRET,
    sandbox_config,
)
from tests.gateway.sandbox.payout_helpers import (
    INVALID_ACCOUNT,
    PENDING_THEN_SUCCESS,
    SLOW_ANSWER,
    SUCCESS,
    SUCCESS_THEN_REVERSED,
    fresh_account,
)
from tests.gateway.sandbox.servers import Receiver, ServerThread


def _client(base: str, *, secret: str = PAYOUT_CLIENT_SECRET, **kw: Any) -> CashfreePayoutsClient:
    options: dict[str, Any] = {"timeout_s": 5, "backoff_s": 0.02, "max_retries": 2} | kw
    return CashfreePayoutsClient(
        base_url=f"{base}/payout",
        verification_base_url=f"{base}/verification",
        client_id=PAYOUT_CLIENT_ID,
        client_secret=secret,
        **options,
    )


@pytest.fixture
async def cf(sandbox_url: str) -> AsyncIterator[CashfreePayoutsClient]:
    async with _client(sandbox_url) as client:
        yield client


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


async def _beneficiary(cf: CashfreePayoutsClient, account: tuple[str, str]) -> str:
    """A beneficiary for a test account (Cashfree keeps one per account: reuse it)."""
    bene_id = "cl_" + account[0]
    try:
        await cf.get_beneficiary(bene_id)
    except CashfreeNotFound:
        await cf.add_beneficiary(
            beneficiary_id=bene_id,
            name="Priya Sharma",
            bank_account_number=account[0],
            bank_ifsc=account[1],
        )
    return bene_id


async def _until(
    cf: CashfreePayoutsClient, transfer_id: str, outcome: Outcome, code: str | None = None
) -> Transfer:
    deadline = time.monotonic() + 5
    while True:
        transfer = await cf.get_transfer(transfer_id=transfer_id)
        if transfer.outcome == outcome and (code is None or transfer.status_code == code):
            return transfer
        assert time.monotonic() < deadline, f"still {transfer.status}/{transfer.status_code}"
        await asyncio.sleep(0.03)


# Credentials and refusals ------------------------------------------------------------


async def test_wrong_credentials_are_an_auth_error(sandbox_url: str) -> None:
    for secret in ("wrong-secret", CLIENT_SECRET):  # a guess, and the PG app's secret
        async with _client(sandbox_url, secret=secret) as bad:
            with pytest.raises(CashfreeAuthError) as err:
                await bad.get_transfer(transfer_id="anything")
            assert (err.value.status, err.value.type) == (401, "authentication_error")
            with pytest.raises(CashfreeAuthError):
                await bad.verify_bank_account(bank_account_number=SUCCESS[0], ifsc=SUCCESS[1])


async def test_validation_problems_are_rejections(cf: CashfreePayoutsClient) -> None:
    with pytest.raises(CashfreeRejected) as err:
        await cf.add_beneficiary(
            beneficiary_id=_id("bad"),
            name="Priya Sharma",
            bank_account_number="123456789012",
            bank_ifsc="NOT-AN-IFSC",
        )
    assert (err.value.status, err.value.code) == (400, "bank_ifsc_invalid")
    bene_id = await _beneficiary(cf, SUCCESS)
    with pytest.raises(CashfreeRejected) as err:
        await cf.create_transfer(transfer_id=_id("tr"), amount_paise=50, beneficiary_id=bene_id)
    assert err.value.code == "transfer_amount_invalid"
    with pytest.raises(CashfreeNotFound) as not_found:
        await cf.create_transfer(transfer_id=_id("tr"), amount_paise=500, beneficiary_id="nobody")
    assert not_found.value.code == "beneficiary_not_found"
    with pytest.raises(ValueError, match="exactly one"):
        await cf.get_transfer()


# Beneficiaries -----------------------------------------------------------------------


async def test_beneficiary_lifecycle(cf: CashfreePayoutsClient) -> None:
    account, ifsc = fresh_account()
    bene_id = _id("bene")
    args: dict[str, Any] = {
        "beneficiary_id": bene_id,
        "name": "Priya Sharma",
        "bank_account_number": account,
        "bank_ifsc": ifsc,
        "email": "payee@example.com",
        "phone": "9876543210",
    }
    added = await cf.add_beneficiary(**args)
    assert (added.beneficiary_id, added.beneficiary_status) == (bene_id, "VERIFIED")
    assert added.beneficiary_instrument_details is not None
    assert added.beneficiary_instrument_details.masked == "XXXX" + account[-4:]
    # Never in a repr, so never in a log line that prints the model.
    assert account not in repr(added) and account not in str(added)
    # A repeat (a retry after a lost answer) is the same beneficiary, not an error.
    assert await cf.add_beneficiary(**args) == added
    with pytest.raises(CashfreeConflict) as err:
        await cf.add_beneficiary(**args | {"bank_account_number": fresh_account()[0]})
    assert err.value.code == "beneficiary_id_already_exists"
    with pytest.raises(CashfreeConflict) as err:
        await cf.add_beneficiary(**args | {"beneficiary_id": _id("other")})
    assert err.value.code == "beneficiary_already_exists"
    assert (await cf.get_beneficiary(bene_id)).beneficiary_name == "Priya Sharma"
    assert (await cf.remove_beneficiary(bene_id)).beneficiary_status == "DELETED"
    with pytest.raises(CashfreeNotFound):
        await cf.get_beneficiary(bene_id)


# Bank-account verification -----------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "name", "valid", "code", "result"),
    [
        (SUCCESS, "Priya Sharma", True, "ACCOUNT_IS_VALID", "DIRECT_MATCH"),
        (
            ("50100000000017", "HDFC0000001"),
            "Priya S Sharma",
            True,
            "ACCOUNT_IS_VALID",
            "GOOD_PARTIAL_MATCH",
        ),
        (
            ("50100000000017", "HDFC0000001"),
            "P Sharma",
            True,
            "ACCOUNT_IS_VALID",
            "MODERATE_PARTIAL_MATCH",
        ),
        (("50100000000017", "HDFC0000001"), "Rahul Verma", True, "ACCOUNT_IS_VALID", "NO_MATCH"),
        (("7766666585146", "YESB0000001"), "Priya Sharma", False, "INVALID_BANK_ACCOUNT", None),
        (("7766667989884", "RATN0000070"), "Priya Sharma", False, "ACCOUNT_BLOCKED", None),
    ],
)
async def test_each_verification_outcome(
    cf: CashfreePayoutsClient,
    account: tuple[str, str],
    name: str,
    valid: bool,
    code: str,
    result: str | None,
) -> None:
    answer = await cf.verify_bank_account(
        bank_account_number=account[0], ifsc=account[1], name=name, user_id=_id("payee")
    )
    assert (answer.valid, answer.account_status_code, answer.name_match_result) == (
        valid,
        code,
        result,
    )
    assert answer.reference_id.isdigit()


# Transfers ---------------------------------------------------------------------------


async def test_transfer_success(cf: CashfreePayoutsClient) -> None:
    bene_id = await _beneficiary(cf, SUCCESS)
    transfer_id = _id("tr")
    created = await cf.create_transfer(
        transfer_id=transfer_id, amount_paise=15_050, beneficiary_id=bene_id, remarks="week 12"
    )
    assert (created.status, created.outcome, created.transfer_amount_paise) == (
        "RECEIVED",
        Outcome.IN_FLIGHT,
        15_050,
    )
    assert created.cf_transfer_id and created.added_on is not None
    done = await _until(cf, transfer_id, Outcome.PAID, "COMPLETED")
    assert done.transfer_utr and done.transfer_service_charge_paise == 100
    assert done.transfer_service_tax_paise == 18
    assert created.cf_transfer_id is not None
    assert await cf.get_transfer(cf_transfer_id=created.cf_transfer_id) == done


async def test_pending_then_success(cf: CashfreePayoutsClient) -> None:
    bene_id = await _beneficiary(cf, PENDING_THEN_SUCCESS)
    transfer_id = _id("tr")
    await cf.create_transfer(transfer_id=transfer_id, amount_paise=1_000, beneficiary_id=bene_id)
    pending = await _until(cf, transfer_id, Outcome.IN_FLIGHT, "SENT_TO_BANK")
    assert pending.status == "PENDING"
    assert (await _until(cf, transfer_id, Outcome.PAID, "COMPLETED")).transfer_utr


async def test_retryable_failure_then_success(
    cf: CashfreePayoutsClient, payouts: httpx.AsyncClient
) -> None:
    await payouts.patch(
        "/_sandbox/payout-faults",
        json={"fail_transfers": 1, "fail_status_code": "BENE_BANK_DECLINED"},
    )
    bene_id = await _beneficiary(cf, SUCCESS)
    first, second = _id("tr"), _id("tr")
    await cf.create_transfer(transfer_id=first, amount_paise=1_000, beneficiary_id=bene_id)
    failed = await _until(cf, first, Outcome.RETRY)
    assert (failed.status, failed.status_code) == ("FAILED", "BENE_BANK_DECLINED")
    # The retry is a new transfer_id (a FAILED one's id is not reused).
    await cf.create_transfer(transfer_id=second, amount_paise=1_000, beneficiary_id=bene_id)
    assert (await _until(cf, second, Outcome.PAID, "COMPLETED")).status == "SUCCESS"


async def test_failure_that_needs_new_bank_details(cf: CashfreePayoutsClient) -> None:
    bene_id = await _beneficiary(cf, INVALID_ACCOUNT)
    transfer_id = _id("tr")
    await cf.create_transfer(transfer_id=transfer_id, amount_paise=1_000, beneficiary_id=bene_id)
    failed = await _until(cf, transfer_id, Outcome.NEW_DETAILS)
    assert (failed.status, failed.status_code) == ("FAILED", "INVALID_ACCOUNT_FAIL")


async def test_reversal_after_success(cf: CashfreePayoutsClient) -> None:
    bene_id = await _beneficiary(cf, SUCCESS_THEN_REVERSED)
    transfer_id = _id("tr")
    await cf.create_transfer(transfer_id=transfer_id, amount_paise=1_000, beneficiary_id=bene_id)
    reversed_ = await _until(cf, transfer_id, Outcome.REVERSED)
    # It was paid first (a UTR and fees), then the bank sent it back.
    assert reversed_.status_code == "INVALID_ACCOUNT_FAIL"
    assert reversed_.transfer_utr and reversed_.transfer_service_charge_paise == 100


async def _transfers_named(payouts: httpx.AsyncClient, transfer_id: str) -> list[dict[str, Any]]:
    state = (await payouts.get("/_sandbox/payouts")).json()
    return [t for t in state["transfers"] if t["transfer_id"] == transfer_id]


async def test_one_transfer_per_transfer_id(
    cf: CashfreePayoutsClient, payouts: httpx.AsyncClient
) -> None:
    bene_id = await _beneficiary(cf, SUCCESS)
    transfer_id = _id("tr")
    first = await cf.create_transfer(
        transfer_id=transfer_id, amount_paise=2_500, beneficiary_id=bene_id
    )
    # A second worker, or a retry after a crash: Cashfree says 409, the client answers
    # with the transfer that exists.
    again = await cf.create_transfer(
        transfer_id=transfer_id, amount_paise=2_500, beneficiary_id=bene_id
    )
    assert again.cf_transfer_id == first.cf_transfer_id
    with pytest.raises(CashfreeConflict) as err:
        await cf.create_transfer(
            transfer_id=transfer_id, amount_paise=9_999, beneficiary_id=bene_id
        )
    assert err.value.code == "transfer_id_already_exists"
    assert len(await _transfers_named(payouts, transfer_id)) == 1


async def test_a_lost_answer_is_asked_for_not_sent_again(
    sandbox_url: str, payouts: httpx.AsyncClient
) -> None:
    # Cashfree's "timeout" test account answers after 1 s here; the client gives up at 0.3 s.
    async with _client(sandbox_url, timeout_s=0.3) as impatient:
        bene_id = await _beneficiary(impatient, SLOW_ANSWER)
        transfer_id = _id("tr")
        created = await impatient.create_transfer(
            transfer_id=transfer_id, amount_paise=4_200, beneficiary_id=bene_id
        )
    assert created.transfer_id == transfer_id and created.transfer_amount_paise == 4_200
    assert len(await _transfers_named(payouts, transfer_id)) == 1


async def test_5xx_on_create_checks_status_then_surfaces(
    cf: CashfreePayoutsClient, payouts: httpx.AsyncClient
) -> None:
    bene_id = await _beneficiary(cf, SUCCESS)
    await payouts.patch("/_sandbox/payout-faults", json={"error_rate": 1.0})
    creates = GATEWAY_CALLS.labels("payout_create_transfer", "500")
    lookups = GATEWAY_CALLS.labels("payout_get_transfer", "500")
    before = creates._value.get(), lookups._value.get()
    transfer_id = _id("tr")
    with pytest.raises(CashfreeUnavailable) as err:
        await cf.create_transfer(
            transfer_id=transfer_id, amount_paise=1_000, beneficiary_id=bene_id
        )
    assert (err.value.status, err.value.type) == (500, "api_error")
    # One create, then the status check (itself retried twice); with the outcome still
    # unknown the create is not sent again: the caller comes back with the same id.
    assert creates._value.get() - before[0] == 1
    assert lookups._value.get() - before[1] == 3
    await payouts.patch("/_sandbox/payout-faults", json={"error_rate": 0})
    assert await _transfers_named(payouts, transfer_id) == []


class _Sink:
    """Records the 429s the client reports (the rate-limit sink protocol)."""

    def __init__(self) -> None:
        self.notes: list[tuple[str, float]] = []

    async def note(self, op: str, retry_after_s: float) -> None:
        self.notes.append((op, retry_after_s))

    async def aclose(self) -> None:
        return None


async def test_a_429_is_raised_with_its_hint() -> None:
    server = ServerThread(
        create_sandbox_app(sandbox_config(rate_limit_profile="sandbox", rate_limit_multiplier=0.05))
    ).start()
    sink = _Sink()
    try:
        async with _client(server.url, max_rate_limit_wait_s=0, rate_limit_sink=sink) as cf:
            with pytest.raises(CashfreeRateLimited) as err:
                for _ in range(10):
                    with pytest.raises(CashfreeNotFound):
                        await cf.get_transfer(transfer_id="none")
    finally:
        server.stop()
    assert err.value.retry_after_s > 0 and err.value.type == "rate_limit_error"
    assert sink.notes and sink.notes[0][0] == "payout_get_transfer"


# Webhooks ----------------------------------------------------------------------------


async def _hooks(receiver: Receiver, name: str, transfer_id: str, count: int) -> list[Any]:
    deadline = time.monotonic() + 5
    while True:
        got = [
            h
            for h in receiver.got(name)
            if json.loads(h.body)["data"]["transfer_id"] == transfer_id
        ]
        if len(got) >= count:
            return got
        assert time.monotonic() < deadline, f"{len(got)} webhooks"
        await asyncio.sleep(0.02)


async def _hook_to(payouts: httpx.AsyncClient, receiver: Receiver) -> str:
    name = _id("hook")
    await payouts.patch("/_sandbox/payout-settings", json={"webhook_url": receiver.hook(name)})
    return name


async def test_webhooks_verified_and_forgeries_refused(
    cf: CashfreePayoutsClient, payouts: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = await _hook_to(payouts, receiver)
    bene_id = await _beneficiary(cf, SUCCESS_THEN_REVERSED)
    transfer_id = _id("tr")
    await cf.create_transfer(transfer_id=transfer_id, amount_paise=1_000, beneficiary_id=bene_id)
    hooks = await _hooks(receiver, name, transfer_id, 3)
    events = [read_transfer_webhook(h.body, h.headers, [PAYOUT_CLIENT_SECRET]) for h in hooks]
    assert [(e.type, e.data.outcome) for e in events] == [
        ("TRANSFER_SUCCESS", Outcome.PAID),
        ("TRANSFER_ACKNOWLEDGED", Outcome.PAID),
        ("TRANSFER_REVERSED", Outcome.REVERSED),
    ]
    assert {e.data.transfer_amount_paise for e in events} == {1_000}
    assert events[0].event_time is not None  # no offset on the wire: read as IST

    hook = hooks[0]
    headers = dict(hook.headers)
    # A rotated-out secret still verifies; the PG app's secret does not.
    assert read_transfer_webhook(hook.body, headers, ["old", PAYOUT_CLIENT_SECRET]).data
    forgeries: list[tuple[bytes, dict[str, str], list[str], str]] = [
        (
            hook.body.replace(b'"transfer_amount":10.00', b'"transfer_amount":99.99'),
            headers,
            [PAYOUT_CLIENT_SECRET],
            "webhook_signature_invalid",
        ),
        (hook.body, headers, [CLIENT_SECRET], "webhook_signature_invalid"),
        (
            hook.body,
            {k: v for k, v in headers.items() if k != "x-webhook-signature"},
            [PAYOUT_CLIENT_SECRET],
            "webhook_unsigned",
        ),
        (
            hook.body,
            headers | {"x-webhook-timestamp": "12ab"},
            [PAYOUT_CLIENT_SECRET],
            "webhook_timestamp_invalid",
        ),
    ]
    for body, forged_headers, secrets, code in forgeries:
        with pytest.raises(Refused) as err:
            read_transfer_webhook(body, forged_headers, secrets)
        assert err.value.code == code
    # Signed well, but long ago (or from the future).
    with pytest.raises(Refused) as err:
        read_transfer_webhook(
            hook.body, headers, [PAYOUT_CLIENT_SECRET], now_s=time.time() + 2 * 86_400
        )
    assert err.value.code == "webhook_stale"
    # Signed well, but not a transfer event.
    stamp = str(int(time.time() * 1000))
    junk = b'{"type":"TRANSFER_SUCCESS","data":{"status":"SUCCESS"}}'
    signed = {
        "x-webhook-timestamp": stamp,
        "x-webhook-signature": sign(PAYOUT_CLIENT_SECRET, stamp, junk),
    }
    with pytest.raises(Refused) as err:
        read_transfer_webhook(junk, signed, [PAYOUT_CLIENT_SECRET])
    assert err.value.code == "webhook_unreadable"


async def test_duplicate_and_lost_webhooks(
    cf: CashfreePayoutsClient, payouts: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = await _hook_to(payouts, receiver)
    await payouts.patch("/_sandbox/payout-faults", json={"webhook_duplicates": 2})
    bene_id = await _beneficiary(cf, INVALID_ACCOUNT)
    doubled = _id("tr")
    await cf.create_transfer(transfer_id=doubled, amount_paise=1_000, beneficiary_id=bene_id)
    twins = await _hooks(receiver, name, doubled, 2)
    read = [read_transfer_webhook(h.body, h.headers, [PAYOUT_CLIENT_SECRET]) for h in twins]
    assert read[0] == read[1] and read[0].type == "TRANSFER_FAILED"
    assert twins[0].headers["x-idempotency-key"] == twins[1].headers["x-idempotency-key"]

    await payouts.patch(
        "/_sandbox/payout-faults", json={"webhook_duplicates": 1, "webhook_drop_rate": 1.0}
    )
    lost = _id("tr")
    await cf.create_transfer(transfer_id=lost, amount_paise=1_000, beneficiary_id=bene_id)
    # Only asking tells: the status API has the end the webhook never brought.
    assert (await _until(cf, lost, Outcome.NEW_DETAILS)).status == "FAILED"
    await asyncio.sleep(0.1)
    assert [h for h in receiver.got(name) if lost.encode() in h.body] == []
    log = (await payouts.get("/_sandbox/payout-webhooks", params={"transfer_id": lost})).json()
    assert [row["outcome"] for row in log] == ["dropped"]


# Pieces without a server -------------------------------------------------------------


def test_account_numbers_are_masked_in_logs() -> None:
    assert mask("026291800001191") == "XXXX1191" and mask("123") == "XXXX" and mask(None) is None
    text = "payout_create_transfer: bank_account_number 026291800001191 : invalid"
    assert redact(text) == "payout_create_transfer: bank_account_number XXXX1191 : invalid"
    vpa = "payout_add_beneficiary: vpa priya.sharma-99@okaxis : invalid (see docs)"
    assert redact(vpa) == "payout_add_beneficiary: vpa XX@okaxis : invalid (see docs)"


async def test_the_factory_wants_the_payouts_pair() -> None:
    with pytest.raises(ValueError, match="BILLING_CASHFREE_PAYOUT_CLIENT_ID"):
        payouts_client(Settings())
    settings = Settings(
        cashfree_payout_client_id="TEST_x",
        cashfree_payout_client_secret="cfsk_ma_test_x",  # type: ignore[arg-type]
    )
    async with payouts_client(settings) as built:
        assert isinstance(built, CashfreePayoutsClient)


def test_payout_urls_default_to_production() -> None:
    settings = Settings()
    assert settings.cashfree_payout_base_url == "https://api.cashfree.com/payout"
    assert settings.cashfree_verification_base_url == "https://api.cashfree.com/verification"
    assert settings.cashfree_payout_client_secret is None
