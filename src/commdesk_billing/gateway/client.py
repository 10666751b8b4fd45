"""Async Cashfree PG client (orders, payments of an order, refunds) over httpx.

A thin client rather than Cashfree's SDK: the SDK hard-codes its hosts (so it cannot reach our
sandbox), validates responses strictly (a new enum value becomes an exception on a payment
path) and is synchronous. Here the base URL and keys come from configuration, the API version
is pinned, every call has a timeout, and calls that may be retried carry an idempotency key.

Rate limits: a 429 is retried in place only when Cashfree's `x-ratelimit-retry` is within
`max_rate_limit_wait_s`; otherwise `CashfreeRateLimited` (with `retry_after_s`) is raised at
once. Our processes build clients with that at 0 (`factory.py`): no HTTP request and no
consumer sleeps on a 429; the request answers 503 with Retry-After, the message goes to the
retry ladder, and the `rate_limit_sink` records the back-off the sync jobs honour.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ValidationError

from commdesk_billing.gateway.amounts import to_rupees
from commdesk_billing.gateway.errors import (
    CashfreeAuthError,
    CashfreeBadResponse,
    CashfreeConflict,
    CashfreeError,
    CashfreeIdempotencyError,
    CashfreeNotFound,
    CashfreeRateLimited,
    CashfreeRejected,
    CashfreeUnavailable,
)
from commdesk_billing.gateway.models import Order, Payment, Refund
from commdesk_billing.telemetry.metrics import GATEWAY_CALLS

log = structlog.get_logger(__name__)

API_VERSION = "2025-01-01"
M = TypeVar("M", bound=BaseModel)


def _encode(body: Mapping[str, Any]) -> bytes:
    return _dumps(body).encode()


def _dumps(value: Any) -> str:
    """JSON with Decimals written verbatim (json.dumps cannot emit them natively)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{_dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)


class RateLimitSink(Protocol):
    """Told of every 429 the client sees (`gateway/backoff.Recorder`); must not raise."""

    async def note(self, op: str, retry_after_s: float) -> None: ...

    async def aclose(self) -> None: ...


# Cashfree's `x-ratelimit-retry` is believed up to this: a wild value (1e9, inf) must not
# stop the syncs for years, nor a non-finite one turn an answer into a crash.
MAX_RATE_LIMIT_HINT_S = 300.0


def rate_limit_hint(headers: Mapping[str, str]) -> float:
    """Seconds to wait after a 429: Cashfree's hint, bounded to [0, 300]; 1 if unreadable."""
    try:
        hint = float(headers.get("x-ratelimit-retry", "1"))
    except ValueError:
        return 1.0
    if not math.isfinite(hint):
        return 1.0
    return min(max(hint, 0.0), MAX_RATE_LIMIT_HINT_S)


class CashfreeClient:
    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        api_version: str = API_VERSION,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.25,
        max_backoff_s: float = 5.0,
        max_rate_limit_wait_s: float = 60.0,
        rate_limit_sink: RateLimitSink | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`max_rate_limit_wait_s`: the longest the client sleeps to honour a 429 before
        retrying the call; a 429 asking for longer (any 429, at 0) is raised at once.
        `rate_limit_sink` is told of every 429, retried or not, and closed with the client."""
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "x-client-id": client_id,
            "x-client-secret": client_secret,
            "x-api-version": api_version,
            "accept": "application/json",
        }
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_rate_limit_wait_s = max_rate_limit_wait_s
        self._sink = rate_limit_sink
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=transport,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._sink is not None:
            await self._sink.aclose()

    async def __aenter__(self) -> CashfreeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- orders ---------------------------------------------------------------------------

    async def create_order(
        self,
        *,
        order_id: str,
        amount_paise: int,
        customer_id: str,
        customer_phone: str,
        customer_email: str | None = None,
        customer_name: str | None = None,
        return_url: str | None = None,
        notify_url: str | None = None,
        expiry_time: str | None = None,
        note: str | None = None,
        tags: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Order:
        """Create an order. Safe to repeat without an idempotency key: Cashfree refuses a
        second order with the same `order_id` (409). With a key, note that Cashfree replays
        the first answer for it, a 5xx included, so a key makes a failed call unrepeatable."""
        customer: dict[str, Any] = {"customer_id": customer_id, "customer_phone": customer_phone}
        if customer_email:
            customer["customer_email"] = customer_email
        if customer_name:
            customer["customer_name"] = customer_name
        meta = {k: v for k, v in (("return_url", return_url), ("notify_url", notify_url)) if v}
        body: dict[str, Any] = {
            "order_id": order_id,
            "order_amount": to_rupees(amount_paise),
            "order_currency": "INR",
            "customer_details": customer,
        }
        if meta:
            body["order_meta"] = meta
        if expiry_time:
            body["order_expiry_time"] = expiry_time
        if note:
            body["order_note"] = note
        if tags:
            body["order_tags"] = dict(tags)
        return await self._call(
            "create_order",
            "POST",
            "/orders",
            Order,
            body=body,
            idempotency_key=idempotency_key,
            retry_safe=True,
        )

    async def fetch_order(self, order_id: str) -> Order:
        return await self._call("fetch_order", "GET", f"/orders/{_seg(order_id)}", Order)

    async def terminate_order(self, order_id: str) -> Order:
        return await self._call(
            "terminate_order",
            "PATCH",
            f"/orders/{_seg(order_id)}",
            Order,
            body={"order_status": "TERMINATED"},
        )

    async def order_payments(self, order_id: str) -> list[Payment]:
        return [p for p, _ in await self.order_payments_raw(order_id)]

    async def order_payments_raw(self, order_id: str) -> list[tuple[Payment, dict[str, Any]]]:
        """Each payment with the exact object Cashfree sent (kept as evidence)."""
        data = await self._request("order_payments", "GET", f"/orders/{_seg(order_id)}/payments")
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise CashfreeBadResponse("order_payments: expected an array of objects", body=data)
        try:
            return [(Payment.model_validate(d), _plain(d)) for d in data]
        except ValidationError as exc:
            raise CashfreeBadResponse(f"order_payments: unreadable: {exc.errors()[:3]}") from exc

    # --- refunds --------------------------------------------------------------------------

    async def create_refund(
        self,
        *,
        order_id: str,
        refund_id: str,
        amount_paise: int,
        note: str | None = None,
        speed: str = "STANDARD",
        idempotency_key: str | None = None,
    ) -> Refund:
        """Ask Cashfree to refund. Safe to repeat: Cashfree keeps `refund_id` unique per order
        and answers a repeat with the same details with the refund it made (no key needed,
        and as with orders, a key would replay a first 5xx for ever)."""
        body: dict[str, Any] = {
            "refund_id": refund_id,
            "refund_amount": to_rupees(amount_paise),
            "refund_speed": speed,
        }
        if note:
            body["refund_note"] = note
        return await self._call(
            "create_refund",
            "POST",
            f"/orders/{_seg(order_id)}/refunds",
            Refund,
            body=body,
            idempotency_key=idempotency_key,
            retry_safe=True,
        )

    async def fetch_refund(self, order_id: str, refund_id: str) -> Refund:
        return await self._call(
            "fetch_refund", "GET", f"/orders/{_seg(order_id)}/refunds/{_seg(refund_id)}", Refund
        )

    async def list_refunds(self, order_id: str) -> list[Refund]:
        return await self._call_list("list_refunds", f"/orders/{_seg(order_id)}/refunds", Refund)

    # --- transport ------------------------------------------------------------------------

    async def _call(
        self,
        op: str,
        method: str,
        path: str,
        model: type[M],
        *,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        retry_safe: bool = False,
    ) -> M:
        data = await self._request(
            op, method, path, body=body, idempotency_key=idempotency_key, retry_safe=retry_safe
        )
        if not isinstance(data, dict):
            raise CashfreeBadResponse(f"{op}: expected an object", body=data)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise CashfreeBadResponse(f"{op}: unreadable response: {exc.errors()[:3]}") from exc

    async def _call_list(self, op: str, path: str, model: type[M]) -> list[M]:
        data = await self._request(op, "GET", path)
        if not isinstance(data, list):
            raise CashfreeBadResponse(f"{op}: expected an array", body=data)
        try:
            return [model.model_validate(item) for item in data]
        except ValidationError as exc:
            raise CashfreeBadResponse(f"{op}: unreadable response: {exc.errors()[:3]}") from exc

    async def _request(
        self,
        op: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        retry_safe: bool = False,
    ) -> Any:
        headers = dict(self._headers)
        content: bytes | None = None
        if body is not None:
            headers["content-type"] = "application/json"
            content = _encode(body)
        if idempotency_key:
            headers["x-idempotency-key"] = idempotency_key
        # Only GETs, keyed writes and writes deduplicated by their own id (an order's
        # order_id) may be sent twice: a PATCH without a key is not retried.
        retryable = method == "GET" or idempotency_key is not None or retry_safe
        attempt = 0
        while True:
            attempt += 1
            headers["x-request-id"] = str(uuid.uuid4())
            try:
                return await self._once(op, method, path, headers, content)
            except CashfreeError as exc:
                if isinstance(exc, CashfreeRateLimited) and self._sink is not None:
                    await self._sink.note(op, exc.retry_after_s)
                if not (exc.retryable and retryable) or attempt > self.max_retries:
                    raise
                wait = self._wait(attempt, exc)
                if wait is None:
                    # Cashfree wants longer than this client may wait: the caller backs off.
                    log.info("cashfree.rate_limited", op=op, error=str(exc))
                    raise
                log.warning(
                    "cashfree.retry", op=op, attempt=attempt, wait_s=round(wait, 3), error=str(exc)
                )
                await asyncio.sleep(wait)

    def _wait(self, attempt: int, exc: CashfreeError) -> float | None:
        """Seconds to sleep before the next attempt; None: do not retry (a 429 asking for
        longer than `max_rate_limit_wait_s`)."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        wait = random.uniform(ceiling / 2, ceiling)
        if isinstance(exc, CashfreeRateLimited):
            if exc.retry_after_s > 0:
                wait = exc.retry_after_s
            if wait > self.max_rate_limit_wait_s:
                return None
        return wait

    async def _once(
        self, op: str, method: str, path: str, headers: dict[str, str], content: bytes | None
    ) -> Any:
        request_id = headers["x-request-id"]
        try:
            resp = await self._http.request(
                method, self.base_url + path, headers=headers, content=content
            )
        except httpx.TimeoutException as exc:
            GATEWAY_CALLS.labels(op, "timeout").inc()
            raise CashfreeUnavailable(f"{op} timed out", request_id=request_id) from exc
        except httpx.TransportError as exc:
            GATEWAY_CALLS.labels(op, "unreachable").inc()
            raise CashfreeUnavailable(
                f"{op} could not reach Cashfree: {exc}", request_id=request_id
            ) from exc
        GATEWAY_CALLS.labels(op, str(resp.status_code)).inc()
        try:
            data = json.loads(resp.content, parse_float=Decimal) if resp.content else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if 200 <= resp.status_code < 300:
            if data is None:
                raise CashfreeBadResponse(f"{op}: body is not JSON", status=resp.status_code)
            return data
        raise _error(op, resp, data, request_id)


def _plain(value: Any) -> Any:
    """Amounts are parsed as Decimal; stored evidence keeps them as their exact decimal text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _seg(value: str) -> str:
    """A path segment: ids are ours (`[A-Za-z0-9_-]`), but never let one carry a slash."""
    return httpx.URL("/" + value).raw_path.decode().lstrip("/").replace("/", "%2F")


def _error(op: str, resp: httpx.Response, data: Any, request_id: str) -> CashfreeError:
    info = data if isinstance(data, dict) else {}
    message = str(info.get("message") or resp.reason_phrase or "error")
    kw: dict[str, Any] = {
        "status": resp.status_code,
        "code": info.get("code"),
        "type_": info.get("type"),
        "request_id": resp.headers.get("x-request-id", request_id),
        "body": data,
    }
    status = resp.status_code
    if status == 429:
        return CashfreeRateLimited(
            f"{op}: {message}", retry_after_s=rate_limit_hint(resp.headers), **kw
        )
    if status >= 500:
        return CashfreeUnavailable(f"{op}: {message}", **kw)
    if status == 401 or status == 403:
        return CashfreeAuthError(f"{op}: {message}", **kw)
    if status == 404:
        return CashfreeNotFound(f"{op}: {message}", **kw)
    if status == 409:
        return CashfreeConflict(f"{op}: {message}", **kw)
    if status == 422:
        return CashfreeIdempotencyError(f"{op}: {message}", **kw)
    return CashfreeRejected(f"{op}: {message}", **kw)
