"""The 429 every counted route may answer, in the OpenAPI document: its problem body and the
`Retry-After`, `RateLimit` and `RateLimit-Policy` headers (clients and schema checkers see
what the middleware, which no route declares, can answer)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from commdesk_billing.problems import MEDIA_TYPE
from commdesk_billing.security.ratelimit.routes import Classifier, RouteClass

_HEADERS = {
    "Retry-After": {
        "description": "Whole seconds until the request would be allowed",
        "schema": {"type": "integer", "minimum": 1},
    },
    "RateLimit-Policy": {
        "description": 'The buckets counted, e.g. `"money";q=120;w=60, "money-ip";q=1200;w=60`',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'Each bucket now, e.g. `"money";r=0;t=12` (r: requests left, t: seconds '
        "until full)",
        "schema": {"type": "string"},
    },
}


def _response(cls: RouteClass) -> dict[str, Any]:
    when = (
        "Refused deliveries (4xx) from this source address spent its bucket; correctly "
        "signed deliveries are never limited"
        if cls is RouteClass.webhooks
        else f"Rate limit of the `{cls.value}` class spent (per user or per address)"
    )
    return {
        "description": f"{when}: `rate_limited`, nothing done",
        "headers": _HEADERS,
        "content": {MEDIA_TYPE: {"schema": {"type": "object"}}},
    }


def document(app: FastAPI) -> None:
    classifier = Classifier()
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for template, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                # A template matches its own row: `{wallet_id}` is a valid path segment.
                _t, cls = classifier.classify(method.upper(), template)
                if cls is RouteClass.exempt or not isinstance(operation, dict):
                    continue
                responses = operation.setdefault("responses", {})
                ours = _response(cls)
                if "429" in responses:  # the route's own 429 (too_many_open_orders)
                    theirs = responses["429"]
                    theirs["description"] = (
                        f"{theirs.get('description', '')}; or: {ours['description']}"
                    )
                    theirs.setdefault("headers", {}).update(_HEADERS)
                else:
                    responses["429"] = ours
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
