"""Bank-account verification (Secure ID BAV V2, cashfree.md §13.4): Cashfree's test accounts'
outcomes, the name match chosen by the name sent, the status look-up and validation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.gateway.sandbox.conftest import PAYOUT_AUTH
from tests.gateway.sandbox.payout_models import ErrorV2, Verification
from tests.gateway.sandbox.strict_models import parse

NAMED = ("50100000000017", "HDFC0000001")  # the sandbox's account of "PRIYA SHARMA"


async def verify(client: httpx.AsyncClient, **body: Any) -> Verification:
    response = await client.post("/verification/bank-account/sync", json=body)
    assert response.status_code == 200, response.text
    return parse(Verification, response.content)


@pytest.mark.parametrize(
    ("account", "status", "code"),
    [
        (("026291800001191", "YESB0000262"), "VALID", "ACCOUNT_IS_VALID"),
        (("7766666585146", "YESB0000001"), "INVALID", "INVALID_BANK_ACCOUNT"),
        (("7766667287515", "ICIC0000001"), "INVALID", "INVALID_IFSC"),
        (("7766667989884", "RATN0000070"), "INVALID", "ACCOUNT_BLOCKED"),
        (("7766667755761", "ICIC0000001"), "INVALID", "NRE_ACCOUNT"),
        (("026291800001190", "YESB0000262"), "INVALID", "INVALID_BANK_ACCOUNT"),
    ],
)
async def test_test_accounts(
    payouts: httpx.AsyncClient, account: tuple[str, str], status: str, code: str
) -> None:
    answer = await verify(payouts, bank_account=account[0], ifsc=account[1], name="Priya Sharma")
    assert (answer.account_status, answer.account_status_code) == (status, code)
    if status == "VALID":
        assert answer.name_at_bank == "PRIYA SHARMA" and answer.utr
        assert answer.name_match_result == "DIRECT_MATCH"
        assert answer.bank_name == "YES BANK"
    else:  # no account, no name to compare
        assert answer.name_at_bank is None and answer.name_match_result is None
        assert answer.utr is None


@pytest.mark.parametrize(
    ("name", "score", "result"),
    [
        ("Priya Sharma", "100.00", "DIRECT_MATCH"),
        ("Mrs. SHARMA priya", "100.00", "DIRECT_MATCH"),
        ("Priya S Sharma", "92.31", "GOOD_PARTIAL_MATCH"),
        ("P Sharma", "80.00", "MODERATE_PARTIAL_MATCH"),
        ("Sharma", "66.67", "POOR_PARTIAL_MATCH"),
        ("Rahul Verma", "52.17", "NO_MATCH"),
    ],
)
async def test_the_name_sent_chooses_the_match(
    payouts: httpx.AsyncClient, name: str, score: str, result: str
) -> None:
    answer = await verify(payouts, bank_account=NAMED[0], ifsc=NAMED[1], name=name)
    assert answer.name_at_bank == "PRIYA SHARMA"
    assert (answer.name_match_score, answer.name_match_result) == (score, result)


async def test_without_a_name_there_is_no_match(payouts: httpx.AsyncClient) -> None:
    answer = await verify(payouts, bank_account=NAMED[0], ifsc=NAMED[1])
    assert answer.account_status == "VALID"
    assert (answer.name_match_score, answer.name_match_result) == (None, None)


async def test_the_result_can_be_fetched_again(sandbox_url: str) -> None:
    # Secure ID asks for no x-api-version (cashfree.md §13.4).
    headers = {k: v for k, v in PAYOUT_AUTH.items() if k != "x-api-version"}
    async with httpx.AsyncClient(base_url=sandbox_url, headers=headers) as client:
        answer = await verify(
            client, bank_account=NAMED[0], ifsc=NAMED[1], name="P Sharma", user_id="payee_7"
        )
        for query in ({"reference_id": str(answer.reference_id)}, {"user_id": "payee_7"}):
            again = await client.get("/verification/bank-account", params=query)
            assert again.status_code == 200, again.text
            assert parse(Verification, again.content) == answer
        missing = await client.get("/verification/bank-account", params={"reference_id": "0"})
        assert missing.status_code == 404
        assert parse(ErrorV2, missing.content).code == "verification_not_found"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"ifsc": "HDFC0000001"}, "bank_account_missing"),
        ({"bank_account": "1234", "ifsc": "HDFC0000001"}, "bank_account_invalid"),
        ({"bank_account": "123456789012"}, "ifsc_missing"),
        ({"bank_account": "123456789012", "ifsc": "hdfc0000001"}, "ifsc_invalid"),
        ({"bank_account": "123456789012", "ifsc": "HDFC0000001", "phone": "12"}, "phone_invalid"),
        ({"bank_account": "123456789012", "ifsc": "HDFC0000001", "name": ""}, "name_invalid"),
    ],
)
async def test_validation(payouts: httpx.AsyncClient, body: dict[str, Any], code: str) -> None:
    response = await payouts.post("/verification/bank-account/sync", json=body)
    assert response.status_code == 400, response.text
    assert parse(ErrorV2, response.content).code == code
