"""Order Pay with Cashfree's sandbox test instruments, attempts, simulate."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from commdesk_billing.gateway.sandbox.instruments import VPA_OUTCOMES
from tests.gateway.sandbox.conftest import SETTLE_DELAY_S
from tests.gateway.sandbox.helpers import (
    create_order,
    fetch_order,
    fetch_payment,
    pay,
    upi_collect,
    wait_payment,
)
from tests.gateway.sandbox.strict_models import (
    ErrorBody,
    PaymentEntity,
    PayOrderEntity,
    SimulationResponse,
    parse,
)

TEST_VPAS = {
    "testsuccess@gocash": "SUCCESS",
    "testfailure@gocash": "FAILED",
    "testuserdropped@gocash": "USER_DROPPED",
    "testinvalid@gocash": "FAILED",
    "testdeclineuser@gocash": "FAILED",
    "testexpired@gocash": "FAILED",
    "testtimeoutbank@gocash": "FAILED",
    "testinsufficientfunds@gocash": "FAILED",
    "testbankdeclined@gocash": "FAILED",
    "testriskflagged@gocash": "FAILED",
    "testnetworkerror@gocash": "FAILED",
    "testinvalidpin@gocash": "FAILED",
}

# The error code each failing VPA reports (Cashfree's test VPA list).
TEST_VPA_ERRORS = {
    "testsuccess@gocash": None,
    "testfailure@gocash": "TRANSACTION_DECLINED",
    "testuserdropped@gocash": "USER_DROPPED",
    "testinvalid@gocash": "INVALID_VPA",
    "testdeclineuser@gocash": "TRANSACTION_DECLINED_BY_USER",
    "testexpired@gocash": "UPI_COLLECT_EXPIRED",
    "testtimeoutbank@gocash": "BANK_TIMEOUT",
    "testinsufficientfunds@gocash": "INSUFFICIENT_FUNDS",
    "testbankdeclined@gocash": "TRANSACTION_DECLINED",
    "testriskflagged@gocash": "RISK_THRESHOLD_EXCEEDED",
    "testnetworkerror@gocash": "NETWORK_ERROR",
    "testinvalidpin@gocash": "INVALID_PIN",
}


def test_every_listed_vpa_is_known() -> None:
    assert set(VPA_OUTCOMES) == set(TEST_VPAS)


async def test_each_test_vpa_ends_as_listed(api: httpx.AsyncClient) -> None:
    async def one(vpa: str) -> tuple[str, PaymentEntity]:
        order = await create_order(api)
        paid_at = time.monotonic()
        response = await pay(api, order.payment_session_id, upi_collect(vpa))
        started = parse(PayOrderEntity, response.content)
        # UPI collect: Cashfree answers "custom" and the payment is PENDING until it settles.
        assert (started.action, started.channel, started.payment_method) == (
            "custom",
            "collect",
            "upi",
        )
        assert str(started.payment_amount) == "300.00"
        pending = await fetch_payment(api, order.order_id, started.cf_payment_id)
        # PENDING until the sandbox's settle delay has passed; on a loaded machine the
        # read may come later than that, and then it is already terminal.
        if time.monotonic() - paid_at < SETTLE_DELAY_S:
            assert pending.payment_status == "PENDING"
        return vpa, await wait_payment(api, order.order_id, started.cf_payment_id)

    results = await asyncio.gather(*(one(vpa) for vpa in TEST_VPAS))
    assert TEST_VPA_ERRORS.keys() == TEST_VPAS.keys()
    for vpa, payment in results:
        assert payment.payment_status == TEST_VPAS[vpa], vpa
        assert payment.payment_group == "upi"
        assert payment.payment_completion_time is not None
        # The failing VPAs say why, each with its own code.
        code = payment.error_details.error_code if payment.error_details else None
        assert code == TEST_VPA_ERRORS[vpa], vpa


async def test_success_pays_the_order(api: httpx.AsyncClient) -> None:
    order = await create_order(api)
    started = parse(
        PayOrderEntity,
        (await pay(api, order.payment_session_id, upi_collect("testsuccess@gocash"))).content,
    )
    payment = await wait_payment(api, order.order_id, started.cf_payment_id)
    assert payment.payment_status == "SUCCESS"
    assert payment.is_captured
    assert payment.payment_message == "00::Transaction success"
    assert (await fetch_order(api, order.order_id)).order_status == "PAID"
    # A paid order takes no more attempts.
    again = await pay(api, order.payment_session_id, upi_collect("testsuccess@gocash"), 400)
    assert parse(ErrorBody, again.content).code == "order_already_paid"


async def test_failed_then_successful_attempt_on_one_order(api: httpx.AsyncClient) -> None:
    order = await create_order(api)
    failed = parse(
        PayOrderEntity,
        (await pay(api, order.payment_session_id, upi_collect("testfailure@gocash"))).content,
    )
    assert (
        await wait_payment(api, order.order_id, failed.cf_payment_id)
    ).payment_status == "FAILED"
    assert (await fetch_order(api, order.order_id)).order_status == "ACTIVE"
    card = {
        "card": {
            "channel": "link",
            "card_number": "4706131211212123",
            "card_holder_name": "Test",
            "card_expiry_mm": "03",
            "card_expiry_yy": "28",
            "card_cvv": "123",
        }
    }
    paid = parse(PayOrderEntity, (await pay(api, order.payment_session_id, card)).content)
    assert paid.action == "link"
    assert paid.data.url is not None
    assert paid.data.url.endswith(f"/pg/view/payments/{paid.cf_payment_id}")
    assert (await wait_payment(api, order.order_id, paid.cf_payment_id)).payment_status == "SUCCESS"
    assert (await fetch_order(api, order.order_id)).order_status == "PAID"
    listing = await api.get(f"/pg/orders/{order.order_id}/payments")
    assert listing.status_code == 200
    payments = parse(list[PaymentEntity], listing.content)  # a bare JSON array
    assert [(p.cf_payment_id, p.payment_status) for p in payments] == [
        (failed.cf_payment_id, "FAILED"),
        (paid.cf_payment_id, "SUCCESS"),
    ]
    card_method = payments[1].payment_method
    assert card_method.model_dump()["card"]["card_number"] == "470613XXXXXX2123"


async def test_order_without_attempts_lists_no_payments(api: httpx.AsyncClient) -> None:
    order = await create_order(api)
    response = await api.get(f"/pg/orders/{order.order_id}/payments")
    assert response.content == b"[]"


async def test_failing_card(api: httpx.AsyncClient) -> None:
    order = await create_order(api)
    card = {"card": {"channel": "link", "card_number": "4012001037141112", "card_cvv": "123"}}
    started = parse(PayOrderEntity, (await pay(api, order.payment_session_id, card)).content)
    payment = await wait_payment(api, order.order_id, started.cf_payment_id)
    assert payment.payment_status == "FAILED"
    assert payment.payment_group == "credit_card"
    assert payment.error_details is not None
    assert payment.error_details.error_code == "CARD_DECLINED"


@pytest.mark.parametrize(
    "netbanking",
    [{"netbanking_bank_code": 3333}, {"netbanking_bank_name": "TESTR"}],
)
async def test_netbanking_test_bank_succeeds(
    api: httpx.AsyncClient, netbanking: dict[str, object]
) -> None:
    order = await create_order(api)
    method = {"netbanking": {"channel": "link"} | netbanking}
    started = parse(PayOrderEntity, (await pay(api, order.payment_session_id, method)).content)
    assert started.payment_method == "netbanking"
    payment = await wait_payment(api, order.order_id, started.cf_payment_id)
    assert payment.payment_status == "SUCCESS"
    assert payment.payment_group == "net_banking"


@pytest.mark.parametrize(("phone", "status"), [("9876543210", "SUCCESS"), ("9999999990", "FAILED")])
async def test_an_app_wallet_pays_or_fails_by_its_phone(
    api: httpx.AsyncClient, phone: str, status: str
) -> None:
    order = await create_order(api)
    method = {"app": {"channel": "link", "provider": "paytm", "phone": phone}}
    started = parse(PayOrderEntity, (await pay(api, order.payment_session_id, method)).content)
    assert started.payment_method == "app" and started.action == "link"
    payment = await wait_payment(api, order.order_id, started.cf_payment_id)
    assert payment.payment_status == status
    assert payment.payment_group == "wallet"
    raw = (await api.get(f"/pg/orders/{order.order_id}/payments/{started.cf_payment_id}")).json()
    assert raw["payment_method"] == {
        "app": {"channel": "link", "provider": "paytm", "phone": phone}
    }


@pytest.mark.parametrize(
    ("method", "code"),
    [
        (
            {"app": {"channel": "link", "provider": "venmo", "phone": "9876543210"}},
            "provider_invalid",
        ),
        ({"app": {"channel": "link", "provider": "phonepe", "phone": "98765"}}, "phone_invalid"),
        (
            {"app": {"channel": "qrcode", "provider": "phonepe", "phone": "9876543210"}},
            "channel_missing",
        ),
        (
            {"netbanking": {"channel": "link", "netbanking_bank_code": 3044}},
            "netbanking_bank_code_invalid",
        ),
        (
            {"card": {"channel": "link", "card_number": "4706131211212124", "card_cvv": "1"}},
            "card_number_invalid",
        ),
        ({"card": {"channel": "link", "card_number": "4706131211212123"}}, "card_cvv_missing"),
        ({"upi": {"upi_id": "testsuccess@gocash"}}, "channel_missing"),
        ({"upi": {"channel": "collect"}}, "upi_id_invalid"),
        ({"paypal": {}}, "payment_method_invalid"),
        ({}, "payment_method_invalid"),
    ],
)
async def test_order_pay_refuses_bad_instruments(
    api: httpx.AsyncClient, method: dict[str, object], code: str
) -> None:
    order = await create_order(api)
    response = await pay(api, order.payment_session_id, method, 400)
    assert parse(ErrorBody, response.content).code == code


async def test_order_pay_needs_a_real_session(api: httpx.AsyncClient) -> None:
    response = await pay(api, "session_doesnotexist", upi_collect("testsuccess@gocash"), 400)
    assert parse(ErrorBody, response.content).code == "payment_session_id_invalid"


async def test_simulate_drives_an_open_payment(api: httpx.AsyncClient) -> None:
    order = await create_order(api)
    # An unlisted VPA: nobody answers the collect request, the payment stays PENDING.
    started = parse(
        PayOrderEntity,
        (await pay(api, order.payment_session_id, upi_collect("someone@okbank"))).content,
    )
    await asyncio.sleep(0.4)
    assert (
        await fetch_payment(api, order.order_id, started.cf_payment_id)
    ).payment_status == "PENDING"
    request = {
        "entity": "PAYMENTS",
        "entity_id": started.cf_payment_id,
        "entity_simulation": {"payment_status": "SUCCESS"},
    }
    response = await api.post("/pg/simulate", json=request)
    assert response.status_code == 200, response.text
    sim = parse(SimulationResponse, response.content)
    assert sim.entity_id == started.cf_payment_id
    payment = await fetch_payment(api, order.order_id, started.cf_payment_id)
    assert payment.payment_status == "SUCCESS"
    assert (await fetch_order(api, order.order_id)).order_status == "PAID"
    fetched = await api.get(f"/pg/simulate/{sim.simulation_id}")
    assert parse(SimulationResponse, fetched.content) == sim
    # A finished payment cannot be simulated again.
    again = await api.post("/pg/simulate", json=request)
    assert again.status_code == 400
    assert parse(ErrorBody, again.content).code == "payment_already_processed"


@pytest.mark.parametrize("status", ["FAILED", "USER_DROPPED", "PENDING"])
async def test_simulate_other_outcomes_on_upi_intent(api: httpx.AsyncClient, status: str) -> None:
    order = await create_order(api)
    started = parse(
        PayOrderEntity,
        (await pay(api, order.payment_session_id, {"upi": {"channel": "link"}})).content,
    )
    assert started.action == "link"
    assert started.data.payload is not None
    assert started.data.payload["default"].startswith("upi://pay?")
    before = await fetch_payment(api, order.order_id, started.cf_payment_id)
    assert before.payment_status == "NOT_ATTEMPTED"
    response = await api.post(
        "/pg/simulate",
        json={
            "entity": "PAYMENTS",
            "entity_id": started.cf_payment_id,
            "entity_simulation": {"payment_status": status, "payment_error_code": "SIM_CODE"},
        },
    )
    assert response.status_code == 200
    payment = await fetch_payment(api, order.order_id, started.cf_payment_id)
    assert payment.payment_status == status
    if status != "PENDING":
        assert payment.error_details is not None
        assert payment.error_details.error_code == "SIM_CODE"


async def test_simulate_unknown_payment_is_404(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/pg/simulate",
        json={
            "entity": "PAYMENTS",
            "entity_id": "1",
            "entity_simulation": {"payment_status": "SUCCESS"},
        },
    )
    assert response.status_code == 404
    assert parse(ErrorBody, response.content).type == "invalid_request_error"


async def test_payment_of_another_order_is_404(api: httpx.AsyncClient) -> None:
    first, second = await create_order(api), await create_order(api)
    started = parse(
        PayOrderEntity,
        (await pay(api, first.payment_session_id, upi_collect("testsuccess@gocash"))).content,
    )
    response = await api.get(f"/pg/orders/{second.order_id}/payments/{started.cf_payment_id}")
    assert response.status_code == 404
    assert parse(ErrorBody, response.content).code == "payment_not_found"
