"""The OpenAPI document's finishing: what no single route can say for itself.

- the `Problem` component (RFC 9457), and every error answer pointing at it (including the
  401 of the bearer scheme, the 429 of the rate limits and the 503 every route may give);
- the 400 `unknown_query_parameter` every /v1 route may give (strict query parameters);
- `Idempotency-Key` marked required where the route needs it: the header is read by a
  dependency that answers a problem of its own when it is missing (400
  `idempotency_key_required`), so FastAPI cannot see that it is required;
- the unused validation schemas FastAPI adds for its own 422 (ours is a problem too).

Installed after every other OpenAPI step (`app.py`), so it sees their responses too.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from commdesk_billing.problems import MEDIA_TYPE, PROBLEM_REF, Problem

IDEMPOTENCY_HEADER = "idempotency-key"
_UNAUTHORIZED = "No valid bearer token (`unauthorized`; `WWW-Authenticate: Bearer`)"
_INVALID = "A path or query parameter is not valid (`validation_error`, with `errors`)"
# Every /v1 route refuses a query parameter it does not declare (security/strictquery.py).
_UNKNOWN_QUERY = "A query parameter the route does not declare (`unknown_query_parameter`)"


def _problem_component() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schema["additionalProperties"] = True
    return schema


def _finish_operation(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if operation.get("security") and "401" not in responses:
        responses["401"] = {"description": _UNAUTHORIZED}
    # FastAPI's own words for the 422 of a route that did not describe it.
    if responses.get("422", {}).get("description") == "Validation Error":
        responses["422"]["description"] = _INVALID
    if path.startswith("/v1/"):
        if "400" not in responses:
            responses["400"] = {"description": _UNKNOWN_QUERY}
        elif "unknown_query_parameter" not in responses["400"]["description"]:
            responses["400"]["description"] += f"; or: {_UNKNOWN_QUERY}"
    for status, response in responses.items():
        if not status.isdigit() or int(status) < 400:
            continue
        response["content"] = {MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "header" and parameter["name"].lower() == IDEMPOTENCY_HEADER:
            parameter["required"] = True
            parameter["schema"] = {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": "^[\\x21-\\x7e]{1,255}$",
            }


def document(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                if isinstance(operation, dict):
                    _finish_operation(path, operation)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = _problem_component()
        text = repr(schema["paths"])
        for unused in ("HTTPValidationError", "ValidationError"):
            if unused in schemas and f"/{unused}'" not in text:
                del schemas[unused]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
