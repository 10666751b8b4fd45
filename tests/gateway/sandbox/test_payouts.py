"""Payouts V2 in the sandbox: its own credentials and version, beneficiaries, transfers and their
state machine on the sandbox clock, the fault switches, and what the control API shows."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.gateway.sandbox.conftest import AUTH, PAYOUT_AUTH, unique
from tests.gateway.sandbox.payout_helpers import (
    INVALID_ACCOUNT,
    PENDING_THEN_FAILURE,
    PENDING_THEN_SUCCESS,
    SUCCESS,
    SUCCESS_THEN_REVERSED,
    add_beneficiary,
    beneficiary_for,
    create_transfer,
    fetch_transfer,
    fresh_account,
    wait_transfer,
)
from tests.gateway.sandbox.payout_models import Beneficiary, ErrorV2, Transfer
from tests.gateway.sandbox.strict_models import parse


def refusal(response: httpx.Response, status: int, code: str) -> ErrorV2:
    assert response.status_code == status, response.text
    error = parse(ErrorV2, response.content)  # ErrorV2: no `help`, unlike PG's body
    assert error.code == code, error
    return error


# Credentials and version -------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},  # none at all
        {"x-client-id": AUTH["x-client-id"], "x-client-secret": AUTH["x-client-secret"]},  # PG's
        {"x-client-id": PAYOUT_AUTH["x-client-id"], "x-client-secret": "wrong"},
    ],
)
async def test_payouts_want_the_payouts_app_credentials(
    sandbox_url: str, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=sandbox_url) as raw:
        for method, path in (
            ("GET", "/payout/transfers?transfer_id=x"),
            ("POST", "/payout/beneficiary"),
            ("POST", "/verification/bank-account/sync"),
            ("GET", "/_sandbox/payouts"),
        ):
            response = await raw.request(
                method, path, headers=headers | {"x-api-version": "2024-01-01"}
            )
            assert response.status_code == 401, (path, response.text)
            if not path.startswith("/_sandbox"):
                error = parse(ErrorV2, response.content)
                assert (error.type, error.code) == ("authentication_error", "request_failed")


async def test_the_payouts_pair_opens_nothing_on_pg(sandbox_url: str) -> None:
    async with httpx.AsyncClient(base_url=sandbox_url, headers=PAYOUT_AUTH) as raw:
        response = await raw.get("/pg/orders/anything", headers={"x-api-version": "2025-01-01"})
        assert response.status_code == 401


@pytest.mark.parametrize("version", [None, "2025-01-01", "2024-1-1"])
async def test_payouts_want_version_2024_01_01(sandbox_url: str, version: str | None) -> None:
    headers = {k: v for k, v in PAYOUT_AUTH.items() if k != "x-api-version"}
    if version:
        headers["x-api-version"] = version
    async with httpx.AsyncClient(base_url=sandbox_url, headers=headers) as raw:
        response = await raw.get("/payout/transfers", params={"transfer_id": "x"})
    refusal(response, 400, "version_missing")
    assert "2024-01-01" in response.json()["message"]


async def test_answers_carry_request_id_and_version(payouts: httpx.AsyncClient) -> None:
    response = await payouts.get(
        "/payout/transfers", params={"transfer_id": "nope"}, headers={"x-request-id": "req-7"}
    )
    refusal(response, 404, "transfer_not_found")
    assert response.headers["x-request-id"] == "req-7"
    assert response.headers["x-api-version"] == "2024-01-01"


# Beneficiaries -----------------------------------------------------------------------


def _beneficiary(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "beneficiary_id": unique("bene"),
        "beneficiary_name": "Priya Sharma",
        "beneficiary_instrument_details": {
            "bank_account_number": fresh_account()[0],
            "bank_ifsc": "HDFC0000001",
        },
    }
    return body | overrides


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"beneficiary_id": None}, "beneficiary_id_missing"),
        ({"beneficiary_id": "has space"}, "beneficiary_id_invalid"),
        ({"beneficiary_id": "b" * 51}, "beneficiary_id_invalid"),
        ({"beneficiary_name": None}, "beneficiary_name_missing"),
        ({"beneficiary_name": "Priya 2"}, "beneficiary_name_invalid"),
        ({"beneficiary_instrument_details": None}, "beneficiary_instrument_details_missing"),
        ({"beneficiary_instrument_details": {}}, "beneficiary_instrument_details_missing"),
        (
            {"beneficiary_instrument_details": {"bank_account_number": "123456789012"}},
            "bank_ifsc_missing",
        ),
        (
            {
                "beneficiary_instrument_details": {
                    "bank_account_number": "123",
                    "bank_ifsc": "HDFC0000001",
                }
            },
            "bank_account_number_invalid",
        ),
        (
            {
                "beneficiary_instrument_details": {
                    "bank_account_number": "123456789012",
                    "bank_ifsc": "HDFC1000001",
                }
            },
            "bank_ifsc_invalid",
        ),
        ({"beneficiary_instrument_details": {"vpa": "no-at-sign"}}, "vpa_invalid"),
        (
            {"beneficiary_contact_details": {"beneficiary_postal_code": "5600"}},
            "beneficiary_postal_code_invalid",
        ),
        (
            {"beneficiary_contact_details": {"beneficiary_email": "nobody"}},
            "beneficiary_email_invalid",
        ),
    ],
)
async def test_beneficiary_validation(
    payouts: httpx.AsyncClient, overrides: dict[str, Any], code: str
) -> None:
    body = {k: v for k, v in _beneficiary(**overrides).items() if v is not None}
    refusal(await payouts.post("/payout/beneficiary", json=body), 400, code)


async def test_a_body_that_is_not_json(payouts: httpx.AsyncClient) -> None:
    response = await payouts.post(
        "/payout/beneficiary", content=b"{nope", headers={"content-type": "application/json"}
    )
    refusal(response, 400, "request_invalid")


async def test_beneficiary_lifecycle(payouts: httpx.AsyncClient) -> None:
    body = _beneficiary(
        beneficiary_contact_details={"beneficiary_phone": "9876543210", "beneficiary_city": "Pune"}
    )
    created = await payouts.post("/payout/beneficiary", json=body)
    assert created.status_code == 201, created.text  # 201, unlike PG's creates
    bene = parse(Beneficiary, created.content)
    assert (bene.beneficiary_id, bene.beneficiary_status) == (body["beneficiary_id"], "VERIFIED")
    assert bene.beneficiary_contact_details.beneficiary_city == "Pune"
    account = body["beneficiary_instrument_details"]

    by_id = await payouts.get("/payout/beneficiary", params={"beneficiary_id": bene.beneficiary_id})
    assert parse(Beneficiary, by_id.content) == bene
    by_account = await payouts.get(
        "/payout/beneficiary",
        params={"bank_account_number": account["bank_account_number"], "bank_ifsc": "HDFC0000001"},
    )
    assert parse(Beneficiary, by_account.content) == bene

    again = await payouts.post("/payout/beneficiary", json=body)
    refusal(again, 409, "beneficiary_id_already_exists")
    same_account = await payouts.post(
        "/payout/beneficiary", json=body | {"beneficiary_id": unique("other")}
    )
    refusal(same_account, 409, "beneficiary_already_exists")

    removed = await payouts.delete(
        "/payout/beneficiary", params={"beneficiary_id": bene.beneficiary_id}
    )
    assert removed.status_code == 200, removed.text
    assert parse(Beneficiary, removed.content).beneficiary_status == "DELETED"
    gone = await payouts.get("/payout/beneficiary", params={"beneficiary_id": bene.beneficiary_id})
    refusal(gone, 404, "beneficiary_not_found")
    refusal(
        await payouts.delete("/payout/beneficiary", params={"beneficiary_id": bene.beneficiary_id}),
        404,
        "beneficiary_not_found",
    )
    refusal(await payouts.get("/payout/beneficiary"), 400, "beneficiary_id_missing")
    # Deleted is gone: the same id and account may be added again.
    assert (await payouts.post("/payout/beneficiary", json=body)).status_code == 201


async def test_a_known_invalid_account_is_added_as_invalid(payouts: httpx.AsyncClient) -> None:
    bene = await beneficiary_for(payouts, INVALID_ACCOUNT)
    assert bene.beneficiary_status == "INVALID"


# Transfers ---------------------------------------------------------------------------


async def test_a_transfer_succeeds_step_by_step(payouts: httpx.AsyncClient) -> None:
    # An hour a step, moved on by the clock: each state is seen for certain, no race.
    r = await payouts.patch("/_sandbox/payout-settings", json={"step_s": 3600})
    assert r.status_code == 200, r.text
    bene = await beneficiary_for(payouts, SUCCESS)
    received = await create_transfer(payouts, bene.beneficiary_id, amount=150.5)
    assert (received.status, received.status_code) == ("RECEIVED", "RECEIVED")
    assert received.transfer_amount == Decimal("150.50") and received.transfer_utr is None
    assert received.transfer_mode == "BANK" and received.fundsource_id == "CASHFREE_1"
    instrument = received.beneficiary_details.beneficiary_instrument_details
    assert (instrument.bank_account_number, instrument.bank_ifsc) == SUCCESS
    seen = []
    for _ in range(3):
        moved = await payouts.post("/_sandbox/clock", json={"advance_seconds": 3600})
        assert moved.status_code == 200, moved.text
        seen.append(await fetch_transfer(payouts, transfer_id=received.transfer_id))
    assert [(t.status, t.status_code) for t in seen] == [
        ("PENDING", "SENT_TO_BANK"),
        ("SUCCESS", "SENT_TO_BENEFICIARY"),
        ("SUCCESS", "COMPLETED"),
    ]
    sent, done = seen[1], seen[2]
    assert sent.transfer_utr and done.transfer_utr == sent.transfer_utr
    assert seen[0].transfer_service_charge is None
    fees = (done.transfer_service_charge, done.transfer_service_tax)
    assert fees == (Decimal("1.00"), Decimal("0.18"))
    assert done.updated_on > received.added_on
    by_cf_id = await fetch_transfer(payouts, cf_transfer_id=received.cf_transfer_id)
    assert by_cf_id == done


async def test_a_transfer_id_is_taken_once(payouts: httpx.AsyncClient) -> None:
    bene = await beneficiary_for(payouts, SUCCESS)
    first = await create_transfer(payouts, bene.beneficiary_id)
    body = {
        "transfer_id": first.transfer_id,
        "transfer_amount": 150,
        "beneficiary_details": {"beneficiary_id": bene.beneficiary_id},
    }
    # The same details and different ones alike: one transfer_id, one transfer (README).
    for amount in (150, 999):
        again = await payouts.post("/payout/transfers", json=body | {"transfer_amount": amount})
        refusal(again, 409, "transfer_id_already_exists")
    state = (await payouts.get("/_sandbox/payouts")).json()
    mine = [t for t in state["transfers"] if t["transfer_id"] == first.transfer_id]
    assert [t["cf_transfer_id"] for t in mine] == [first.cf_transfer_id]


async def test_pending_then_success_and_pending_then_failure(payouts: httpx.AsyncClient) -> None:
    ok = await create_transfer(
        payouts, (await beneficiary_for(payouts, PENDING_THEN_SUCCESS)).beneficiary_id
    )
    bad = await create_transfer(
        payouts, (await beneficiary_for(payouts, PENDING_THEN_FAILURE)).beneficiary_id
    )
    for transfer in (ok, bad):
        pending = await wait_transfer(payouts, transfer.transfer_id, "SENT_TO_BANK")
        assert pending.status == "PENDING"
    assert (await wait_transfer(payouts, ok.transfer_id, "COMPLETED")).status == "SUCCESS"
    failed = await wait_transfer(payouts, bad.transfer_id, "BENE_BANK_DECLINED")
    assert failed.status == "FAILED" and failed.transfer_utr is None


async def test_stay_pending_until_the_clock_moves(payouts: httpx.AsyncClient) -> None:
    r = await payouts.patch("/_sandbox/payout-faults", json={"pending_extra_s": 3600})
    assert r.status_code == 200, r.text
    bene = await beneficiary_for(payouts, SUCCESS)
    transfer = await create_transfer(payouts, bene.beneficiary_id)
    await wait_transfer(payouts, transfer.transfer_id, "SENT_TO_BANK")
    await asyncio.sleep(0.4)  # several steps' worth: it must still be pending
    assert (await fetch_transfer(payouts, transfer_id=transfer.transfer_id)).status == "PENDING"
    moved = await payouts.post("/_sandbox/clock", json={"advance_seconds": 3600})
    assert moved.status_code == 200, moved.text
    # Every step that fell due ran at once, in order.
    done = await fetch_transfer(payouts, transfer_id=transfer.transfer_id)
    assert (done.status, done.status_code) == ("SUCCESS", "COMPLETED")


async def test_retryable_failure_then_success(payouts: httpx.AsyncClient) -> None:
    r = await payouts.patch(
        "/_sandbox/payout-faults",
        json={"fail_transfers": 1, "fail_status_code": "BENEFICIARY_BANK_OFFLINE"},
    )
    assert r.status_code == 200, r.text
    bene = await beneficiary_for(payouts, SUCCESS)
    first = await create_transfer(payouts, bene.beneficiary_id)
    second = await create_transfer(payouts, bene.beneficiary_id)  # the retry, a new id
    failed = await wait_transfer(payouts, first.transfer_id, "BENEFICIARY_BANK_OFFLINE")
    assert failed.status == "FAILED"
    assert (await wait_transfer(payouts, second.transfer_id, "COMPLETED")).status == "SUCCESS"
    assert (await payouts.get("/_sandbox/payout-faults")).json()["fail_transfers"] == 0


async def test_failures_that_need_new_bank_details(payouts: httpx.AsyncClient) -> None:
    invalid = await beneficiary_for(payouts, INVALID_ACCOUNT)
    by_account = await create_transfer(payouts, invalid.beneficiary_id)
    r = await payouts.patch(
        "/_sandbox/payout-faults",
        json={"fail_transfers": 1, "fail_status_code": "INVALID_BENE_ACCOUNT_OR_IFSC"},
    )
    assert r.status_code == 200, r.text
    by_fault = await create_transfer(
        payouts, (await beneficiary_for(payouts, SUCCESS)).beneficiary_id
    )
    failed = await wait_transfer(payouts, by_account.transfer_id, "INVALID_ACCOUNT_FAIL")
    assert failed.status == "FAILED"
    failed = await wait_transfer(payouts, by_fault.transfer_id, "INVALID_BENE_ACCOUNT_OR_IFSC")
    assert failed.status == "FAILED"


async def test_reversal_after_success(payouts: httpx.AsyncClient) -> None:
    scripted = await create_transfer(
        payouts, (await beneficiary_for(payouts, SUCCESS_THEN_REVERSED)).beneficiary_id
    )
    r = await payouts.patch(
        "/_sandbox/payout-faults",
        json={"reverse_transfers": 1, "reverse_status_code": "ACCOUNT_BLOCKED"},
    )
    assert r.status_code == 200, r.text
    by_fault = await create_transfer(
        payouts, (await beneficiary_for(payouts, SUCCESS)).beneficiary_id
    )
    for transfer, code in ((scripted, "INVALID_ACCOUNT_FAIL"), (by_fault, "ACCOUNT_BLOCKED")):
        reversed_ = await wait_transfer(payouts, transfer.transfer_id, code)
        # It had succeeded (a UTR, fees) before the bank sent it back; the webhooks'
        # order (SUCCESS, ACKNOWLEDGED, REVERSED) is in test_payout_webhooks.py.
        assert reversed_.status == "REVERSED" and reversed_.transfer_utr
        assert reversed_.transfer_service_charge == Decimal("1.00")


async def test_rejections(payouts: httpx.AsyncClient) -> None:
    bank_only = await beneficiary_for(payouts, SUCCESS)
    wrong_mode = await create_transfer(payouts, bank_only.beneficiary_id, transfer_mode="upi")
    r = await payouts.patch(
        "/_sandbox/payout-faults",
        json={"fail_transfers": 1, "fail_status_code": "VELOCITY_CHECK_FAILED"},
    )
    assert r.status_code == 200, r.text
    risky = await create_transfer(payouts, bank_only.beneficiary_id)
    rejected = await wait_transfer(payouts, wrong_mode.transfer_id, "INVALID_MODE_FOR_PYID")
    assert rejected.status == "REJECTED"
    rejected = await wait_transfer(payouts, risky.transfer_id, "VELOCITY_CHECK_FAILED")
    assert rejected.status == "REJECTED"


async def test_upi_transfers_to_inline_beneficiaries(payouts: httpx.AsyncClient) -> None:
    outcomes = {}
    for vpa in ("success@upi", "failure@upi"):
        response = await payouts.post(
            "/payout/transfers",
            json={
                "transfer_id": unique("upi"),
                "transfer_amount": 10,
                "transfer_mode": "upi",
                "beneficiary_details": {
                    "beneficiary_name": "Priya Sharma",
                    "beneficiary_instrument_details": {"vpa": vpa},
                },
            },
        )
        assert response.status_code == 200, response.text
        outcomes[vpa] = parse(Transfer, response.content)
        assert outcomes[vpa].beneficiary_details.beneficiary_id is None
    ok = await wait_transfer(payouts, outcomes["success@upi"].transfer_id, "COMPLETED")
    assert ok.transfer_mode == "UPI"
    failed = await wait_transfer(payouts, outcomes["failure@upi"].transfer_id, "INVALID_BENE_VPA")
    assert failed.status == "FAILED"


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"transfer_id": None}, 400, "transfer_id_missing"),
        ({"transfer_id": "with-dash"}, 400, "transfer_id_invalid"),
        ({"transfer_id": "t" * 41}, 400, "transfer_id_invalid"),
        ({"transfer_amount": None}, 400, "transfer_amount_missing"),
        ({"transfer_amount": 0.99}, 400, "transfer_amount_invalid"),
        ({"transfer_amount": "150"}, 400, "transfer_amount_invalid"),
        ({"transfer_amount": 1.005}, 400, "transfer_amount_invalid"),
        ({"transfer_currency": "USD"}, 400, "transfer_currency_invalid"),
        ({"transfer_mode": "paytm"}, 400, "transfer_mode_invalid"),
        ({"transfer_mode": "carrier_pigeon"}, 400, "transfer_mode_invalid"),
        ({"transfer_remarks": "no symbols!"}, 400, "transfer_remarks_invalid"),
        ({"beneficiary_details": None}, 400, "beneficiary_details_missing"),
        ({"beneficiary_details": {}}, 400, "beneficiary_id_missing"),
        ({"beneficiary_details": {"beneficiary_id": "never_added"}}, 404, "beneficiary_not_found"),
    ],
)
async def test_transfer_validation(
    payouts: httpx.AsyncClient, overrides: dict[str, Any], status: int, code: str
) -> None:
    bene = await beneficiary_for(payouts, SUCCESS)
    body = {
        "transfer_id": unique("bad"),
        "transfer_amount": 150,
        "beneficiary_details": {"beneficiary_id": bene.beneficiary_id},
    } | overrides
    body = {k: v for k, v in body.items() if v is not None}
    refusal(await payouts.post("/payout/transfers", json=body), status, code)


async def test_transfer_lookups(payouts: httpx.AsyncClient) -> None:
    refusal(await payouts.get("/payout/transfers"), 400, "transfer_id_missing")
    for query in ({"transfer_id": "never_made"}, {"cf_transfer_id": "1"}):
        refusal(await payouts.get("/payout/transfers", params=query), 404, "transfer_not_found")
    bene = await beneficiary_for(payouts, SUCCESS)
    transfer = await create_transfer(payouts, bene.beneficiary_id)
    mismatch = {"transfer_id": transfer.transfer_id, "cf_transfer_id": "1"}
    refusal(await payouts.get("/payout/transfers", params=mismatch), 404, "transfer_not_found")


# Faults and the control API ----------------------------------------------------------


async def test_an_injected_5xx_does_nothing(payouts: httpx.AsyncClient) -> None:
    bene = await beneficiary_for(payouts, SUCCESS)
    await payouts.patch("/_sandbox/payout-faults", json={"error_rate": 1.0})
    transfer_id = unique("lost")
    response = await payouts.post(
        "/payout/transfers",
        json={
            "transfer_id": transfer_id,
            "transfer_amount": 150,
            "beneficiary_details": {"beneficiary_id": bene.beneficiary_id},
        },
    )
    error = refusal(response, 500, "internal_server_error")
    assert error.type == "api_error"
    await payouts.patch("/_sandbox/payout-faults", json={"error_rate": 0})
    refusal(
        await payouts.get("/payout/transfers", params={"transfer_id": transfer_id}),
        404,
        "transfer_not_found",
    )


async def test_payout_faults_are_their_own(
    payouts: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    await payouts.patch("/_sandbox/payout-faults", json={"error_rate": 1.0})
    # PG answers as usual: the two products' faults are apart.
    assert (await api.get("/pg/orders/never_made")).status_code == 404
    assert (await api.get("/_sandbox/faults")).json()["error_rate"] == 0
    for bad in (
        {"fail_status_code": "NOT_A_CODE"},
        {"fail_transfers": -1},
        {"pending_extra_s": -5},
        {"no_such_fault": 1},
    ):
        response = await payouts.patch("/_sandbox/payout-faults", json=bad)
        assert response.status_code == 400, (bad, response.text)
    bad_url = await payouts.patch("/_sandbox/payout-settings", json={"webhook_url": "ftp://x"})
    assert bad_url.status_code == 400


async def test_the_control_api_shows_what_the_sandbox_holds(payouts: httpx.AsyncClient) -> None:
    bene = await add_beneficiary(payouts, fresh_account())
    transfer = await create_transfer(payouts, bene.beneficiary_id)
    state = (await payouts.get("/_sandbox/payouts")).json()
    assert bene.beneficiary_id in {b["beneficiary_id"] for b in state["beneficiaries"]}
    (mine,) = [t for t in state["transfers"] if t["transfer_id"] == transfer.transfer_id]
    assert mine["sandbox_plan"] == {
        "status": "SUCCESS",
        "status_code": None,
        "pending_s": 0.0,
        "reverse_code": None,
    }
    health = (await payouts.get("/_sandbox/health")).json()
    assert sum(health["transfers"].values()) == len(state["transfers"])
