"""The OpenAPI document itself: valid OpenAPI 3.1, every error a `Problem`, Idempotency-Key
required where a route reads it, and each documented route written for a reader: its own
summary and description, examples of its request body, and only its own errors.

`DOCUMENTED_TAGS` are the routers held to that standard (docs/api.md
"Documenting a route"): every router the API has, so a new one joins with its write-up."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from openapi_spec_validator import validate

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.modules.events.model import DeliveryStatus
from commdesk_billing.modules.invoices.document import DocumentKind
from commdesk_billing.modules.mandates.model import MandateStatus
from commdesk_billing.modules.partners.model import PartnerStatus
from commdesk_billing.modules.payees.model import PayeeStatus
from commdesk_billing.modules.payments.state import Status as PaymentStatus
from commdesk_billing.modules.reconciliation.model import State as FindingState
from commdesk_billing.modules.refunds.model import RefundStatus
from commdesk_billing.modules.settlements.model import AttemptStatus, SettlementStatus
from commdesk_billing.modules.sponsorships.model import (
    MilestoneStatus,
    SponsorshipPath,
    SponsorshipStatus,
)
from commdesk_billing.modules.subscriptions.model import ChangeStatus
from commdesk_billing.modules.subscriptions.model import Status as SubscriptionStatus
from commdesk_billing.modules.wallet.model import HoldStatus, TxnType

DOCUMENTED_TAGS = frozenset(
    {
        "wallets",
        "refunds",
        "invoices",
        "mandates",
        "billing profile",
        "ops",
        "auto-recharge",
        "audit",
        "payments",
        "webhooks",
        "communities",
        "sponsorships",
        "easy split",
        "usage",
        "payees",
        "partners",
        "settlements",
        "subscriptions",
        "events",
        "fraud",
        "reconciliation",
        "analytics",
    }
)
METHODS = ("get", "put", "post", "delete", "patch")
PROBLEM = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture(scope="module")
def spec(settings: Settings) -> dict[str, Any]:
    return create_app(settings).openapi()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method in METHODS
    ]


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    assert len(_operations(spec)) > 80


def test_every_error_answer_is_a_problem_document(spec: dict[str, Any]) -> None:
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "code"} <= set(problem["required"])
    assert "detail" in problem["properties"] and problem["additionalProperties"] is True
    wrong = [
        (method, path, status)
        for method, path, op in _operations(spec)
        for status, answer in op["responses"].items()
        if int(status) >= 400
        and answer["content"] != {"application/problem+json": {"schema": PROBLEM}}
    ]
    assert wrong == []
    # FastAPI's own validation schema is gone: our 422 is a problem too.
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_every_v1_route_documents_401_when_authenticated_and_400_and_503(
    spec: dict[str, Any],
) -> None:
    for method, path, op in _operations(spec):
        if not path.startswith("/v1/"):
            continue
        statuses = set(op["responses"])
        assert {"400", "503"} <= statuses, (method, path)
        assert "unknown_query_parameter" in op["responses"]["400"]["description"]
        if op.get("security"):
            assert "401" in statuses, (method, path)


def test_idempotency_key_is_required_where_it_is_read(spec: dict[str, Any]) -> None:
    keyed = []
    for method, path, op in _operations(spec):
        for p in op.get("parameters", []):
            if p["in"] == "header" and p["name"].lower() == "idempotency-key":
                assert p["required"] is True, (method, path)
                assert p["schema"]["maxLength"] == 255
                keyed.append((method, path))
    assert ("POST", "/v1/wallets/{wallet_id}/debits") in keyed
    assert ("POST", "/v1/payments/orders") in keyed
    assert ("GET", "/v1/wallets/me") not in keyed


def _documented(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (m, p, op) for m, p, op in _operations(spec) if DOCUMENTED_TAGS & set(op.get("tags", []))
    ]


def test_every_router_is_held_to_the_standard(spec: dict[str, Any]) -> None:
    every_tag = {tag for _m, _p, op in _operations(spec) for tag in op.get("tags", [])}
    assert every_tag == DOCUMENTED_TAGS
    assert all(op.get("tags") for _m, _p, op in _operations(spec))


def test_documented_routes_have_their_own_summary_and_description(spec: dict[str, Any]) -> None:
    ops = _documented(spec)
    assert len(ops) >= 12
    for method, path, op in ops:
        # FastAPI's default summary is the function's name in title case ("Get Wallet").
        name = op["operationId"].split("_v1_")[0].replace("_", " ").title()
        assert op.get("summary") and op["summary"] != name, (method, path)
        assert len(op.get("description", "")) >= 60, (method, path)
    # No two routes anywhere share a description or a summary.
    every = _operations(spec)
    descriptions = Counter(op["description"] for _m, _p, op in every if op.get("description"))
    assert [d for d, n in descriptions.items() if n > 1] == []
    summaries = Counter(op["summary"] for _m, _p, op in every)
    assert [s for s, n in summaries.items() if n > 1] == []


def test_documented_routes_give_request_examples_and_their_own_errors(
    spec: dict[str, Any],
) -> None:
    error_sets = Counter()
    for method, path, op in _documented(spec):
        body = op.get("requestBody")
        if body is not None:
            examples = body["content"]["application/json"].get("examples", {})
            assert examples and all("value" in e for e in examples.values()), (method, path)
        errors = {s: a["description"] for s, a in op["responses"].items() if int(s) >= 400}
        # Every error names its problem code(s): `code` in backticks.
        for status, text in errors.items():
            assert "`" in text, (method, path, status)
        # A route without a body cannot answer 413; one without a key, no key problem.
        if body is None:
            assert "413" not in errors, (method, path)
        keyed = any(p["name"] == "idempotency-key" for p in op.get("parameters", []))
        if not keyed:
            assert "idempotency" not in " ".join(errors.values()).lower(), (method, path)
        error_sets[tuple(sorted(errors.items()))] += 1
    # Routes say their own errors: no one shared list for a whole router.
    assert max(error_sets.values()) <= 2


def _enum(schemas: dict[str, Any], prop: dict[str, Any]) -> set[str]:
    target = schemas[prop["$ref"].rsplit("/", 1)[1]] if "$ref" in prop else prop
    return set(target.get("enum", ()))


def test_statuses_are_enumerated(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    expected = {
        ("HoldOut", "status"): {m.value for m in HoldStatus},
        ("TransactionOut", "transaction_type"): {m.value for m in TxnType},
        ("RefundOut", "status"): {m.value for m in RefundStatus},
        ("MandateOut", "status"): {m.value for m in MandateStatus},
        ("InvoiceOut", "kind"): {m.value for m in DocumentKind},
        ("PaymentOut", "status"): {m.value for m in PaymentStatus},
        ("SponsorshipOut", "status"): {m.value for m in SponsorshipStatus},
        ("SponsorshipOut", "path"): {m.value for m in SponsorshipPath},
        ("SponsorshipSummary", "status"): {m.value for m in SponsorshipStatus},
        ("MilestoneOut", "status"): {m.value for m in MilestoneStatus},
        ("SponsorshipPaymentOut", "status"): {m.value for m in PaymentStatus},
        ("EventResultOut", "status"): {"accepted", "duplicate", "rejected", "conflict"},
        ("PayeeOut", "status"): {m.value for m in PayeeStatus},
        ("SettlementOut", "status"): {m.value for m in SettlementStatus},
        ("TransferOut", "status"): {m.value for m in AttemptStatus},
        ("SubscriptionOut", "status"): {m.value for m in SubscriptionStatus},
        ("PlanChangeOut", "status"): {m.value for m in ChangeStatus},
        ("PartnerOut", "status"): {m.value for m in PartnerStatus},
        ("DeliveryOut", "status"): {m.value for m in DeliveryStatus},
        ("FindingOut", "state"): {m.value for m in FindingState},
        ("ReviewOut", "status"): {"pending", "released", "refunded"},
    }
    for (model, field), values in expected.items():
        assert _enum(schemas, schemas[model]["properties"][field]) == values, (model, field)
