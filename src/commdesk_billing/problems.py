"""RFC 9457 problem responses, for every error the API can give."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from commdesk_billing.config import Settings
from commdesk_billing.db import errors as db_errors
from commdesk_billing.db.errors import DatabaseUnavailable
from commdesk_billing.errors import DomainError
from commdesk_billing.security.headers import base_headers
from commdesk_billing.telemetry import context as trace_context

log = structlog.get_logger(__name__)

MEDIA_TYPE = "application/problem+json"


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    instance: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:commdesk:billing:problem:{code}",
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    # Extension members never override the standard ones.
    body.update({k: v for k, v in extra.items() if k not in body})
    # The request's id (also the X-Request-ID header): what support asks a caller for, so
    # the access log and traces of this answer are found from the body alone.
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if isinstance(request_id, str) and "request_id" not in body:
        body["request_id"] = request_id
    return body


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status=status, code=code, title=title, detail=detail, **extra),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def domain_problem_body(exc: DomainError) -> dict[str, Any]:
    return problem_body(
        status=exc.status, code=exc.code, title=exc.title, detail=exc.detail, **exc.extra
    )


UNAVAILABLE_CODE = "database_unavailable"
# Retry-After of a 503 whose dependency gave no hint of its own (Cashfree down, say).
DEPENDENCY_RETRY_AFTER_S = 5


def unavailable_problem(exc: DatabaseUnavailable) -> JSONResponse:
    """503 with `Retry-After`: the database could not serve the request now. Whether the
    request took effect is known only for the keyed ones: repeating them with the same
    Idempotency-Key is safe either way."""
    return problem(
        503,
        UNAVAILABLE_CODE,
        "Service temporarily unavailable",
        "the database is overloaded or unavailable; retry after Retry-After seconds "
        "(with the same Idempotency-Key, a repeat never applies twice)",
        headers={"Retry-After": str(exc.retry_after_s)},
        retry_after_s=exc.retry_after_s,
    )


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    # Never echo the input back: it may be huge or hostile.
    return [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ][:50]


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        headers = None
        if exc.status == 503:
            # Every 503 says when to come back (a dependency is away; the same request with
            # the same Idempotency-Key is safe to repeat).
            wait = exc.extra.get("retry_after_s", DEPENDENCY_RETRY_AFTER_S)
            headers = {"Retry-After": str(wait)}
        return JSONResponse(
            domain_problem_body(exc),
            status_code=exc.status,
            media_type=MEDIA_TYPE,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(
            422,
            "validation_error",
            "Request is not valid",
            "the request does not match the schema",
            errors=_clean_errors(exc.errors()),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            415: "unsupported_media_type",
        }
        code = codes.get(exc.status_code, "http_error")
        return problem(
            exc.status_code,
            code,
            code.replace("_", " ").capitalize(),
            str(exc.detail) if exc.detail else None,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DatabaseUnavailable)
    async def _unavailable(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return unavailable_problem(db_errors.report(exc, exc.reason))

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        # The same classification for database errors that did not come through
        # `in_transaction` (a route using the engine directly); anything else is a 500.
        reason = db_errors.classify(exc)
        if reason is None:
            raise exc
        return unavailable_problem(db_errors.report(exc, reason))

    app.add_exception_handler(sa_exc.DBAPIError, _database)
    app.add_exception_handler(sa_exc.TimeoutError, _database)

    # Starlette's outermost middleware answers with this and then re-raises, so uvicorn
    # closes the connection after the response: say so (`Connection: close`), or a client
    # reusing the connection sees its next request fail without an answer.
    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # Logged in the request's trace (Observe kept it on the scope: this handler runs
        # outside every middleware, after the request's span has ended).
        with trace_context.remote_parent(getattr(request.state, "traceparent", None)):
            log.exception("http.unhandled_error", path=request.url.path)
        headers = {"Connection": "close"}
        # Answered outside every middleware, SecurityHeaders included: its headers here.
        settings = getattr(request.app.state, "settings", None)
        if isinstance(settings, Settings):
            own = base_headers(settings, request.url.path)
            headers.update({n.decode(): v.decode() for n, v in own})
            headers["Cache-Control"] = "no-store"
        # Answered outside the request middleware (Starlette's outermost layer), so the id
        # it set on the scope is put on here: the one answer support most needs it on.
        if (request_id := getattr(request.state, "request_id", None)) is not None:
            headers["X-Request-ID"] = request_id
        return problem(
            500,
            "internal_error",
            "Internal error",
            "the request failed; it is safe to retry with the same Idempotency-Key",
            headers=headers,
        )


UNAVAILABLE_DOC = "Database overloaded or unavailable (`database_unavailable`): see Retry-After"


class Problem(BaseModel):
    """An RFC 9457 problem document: every error this API answers is one
    (`application/problem+json`). `code` is the stable, machine-readable part; extension
    members (`errors`, `retry_after_s`, `refundable_paise`...) depend on the code."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(
        description="URI of the problem type: `urn:commdesk:billing:problem:<code>`",
        examples=["urn:commdesk:billing:problem:insufficient_credits"],
    )
    title: str = Field(description="Short, human-readable summary of the problem type")
    status: int = Field(description="The HTTP status code of this answer", ge=400, le=599)
    code: str = Field(
        description="Stable machine-readable code (snake_case): branch on this, never on text",
        examples=["insufficient_credits"],
    )
    detail: str | None = Field(
        default=None, description="What went wrong with this request, for a person"
    )
    instance: str | None = Field(default=None, description="URI of this occurrence, if any")


PROBLEM_REF = "#/components/schemas/Problem"


def _problem_content() -> dict[str, Any]:
    return {MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}


def documented(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a router: each status documented as a problem document
    (the `Problem` component). Every route may answer 503 `database_unavailable`."""
    merged = dict(descriptions)
    merged[503] = f"{merged[503]}; or: {UNAVAILABLE_DOC}" if 503 in merged else UNAVAILABLE_DOC
    return {
        code: {"description": text, "content": _problem_content()} for code, text in merged.items()
    }


def errors(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for one route: the errors it can give, each in words of its
    own (which code, when). 401, 429 and 503 need no mention: the first comes with the
    bearer scheme (see `apispec.py`), the others are added to every route that can answer
    them."""
    return documented(descriptions)
