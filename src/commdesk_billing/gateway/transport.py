"""One Cashfree API over httpx: headers, timeouts, bounded retries, typed errors. The PG client
(`client.py`, `subscriptions.py`: both `PgClient`) and the Payouts client (`payouts.py`) each hold
one per base URL.

Retries: only calls that may be sent twice (GETs, keyed writes, writes deduplicated by their
own id) and only on what may pass (5xx, 429, timeouts, broken connections, unreadable 2xx),
at most `max_retries` times with jittered exponential waits. A 429 is retried in place only
when Cashfree's `x-ratelimit-retry` is within `max_rate_limit_wait_s`; otherwise
`CashfreeRateLimited` (with `retry_after_s`) is raised at once, and the `rate_limit_sink` is
told of every 429 either way.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol, Self, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ValidationError

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
from commdesk_billing.telemetry.metrics import GATEWAY_CALLS

log = structlog.get_logger("commdesk_billing.gateway.client")

M = TypeVar("M", bound=BaseModel)


def encode(body: Mapping[str, Any]) -> bytes:
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


def _same(text: str) -> str:
    return text


def pg_headers(client_id: str, client_secret: str, api_version: str) -> dict[str, str]:
    """The headers of every call to Cashfree's PG app (orders, Easy Split, Subscriptions):
    its pair and the pinned API version."""
    return {
        "x-client-id": client_id,
        "x-client-secret": client_secret,
        "x-api-version": api_version,
        "accept": "application/json",
    }


class Transport:
    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        timeout_s: float,
        max_retries: int,
        backoff_s: float,
        max_backoff_s: float,
        max_rate_limit_wait_s: float,
        rate_limit_sink: RateLimitSink | None,
        transport: httpx.AsyncBaseTransport | None,
        redact: Callable[[str], str] = _same,
        unprocessable: type[CashfreeRejected] = CashfreeIdempotencyError,
    ) -> None:
        """`redact` cleans error text before it is logged (Payouts: account numbers);
        `unprocessable` is what a 422 means on this API (PG: an idempotency key reused)."""
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_rate_limit_wait_s = max_rate_limit_wait_s
        self._sink = rate_limit_sink
        self._redact = redact
        self._unprocessable = unprocessable
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=transport,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        op: str,
        method: str,
        path: str,
        model: type[M],
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        retry_safe: bool = False,
        retries: int | None = None,
    ) -> M:
        data = await self.request(
            op,
            method,
            path,
            body=body,
            params=params,
            idempotency_key=idempotency_key,
            retry_safe=retry_safe,
            retries=retries,
        )
        if not isinstance(data, dict):
            raise CashfreeBadResponse(f"{op}: expected an object", body=data)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise CashfreeBadResponse(f"{op}: unreadable response: {exc.errors()[:3]}") from exc

    async def call_list(self, op: str, path: str, model: type[M]) -> list[M]:
        data = await self.request(op, "GET", path)
        if not isinstance(data, list):
            raise CashfreeBadResponse(f"{op}: expected an array", body=data)
        try:
            return [model.model_validate(item) for item in data]
        except ValidationError as exc:
            raise CashfreeBadResponse(f"{op}: unreadable response: {exc.errors()[:3]}") from exc

    async def request(
        self,
        op: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        retry_safe: bool = False,
        retries: int | None = None,
    ) -> Any:
        """`retries` overrides `max_retries` for this call (0: the caller retries itself)."""
        headers = dict(self._headers)
        content: bytes | None = None
        if body is not None:
            headers["content-type"] = "application/json"
            content = encode(body)
        if idempotency_key:
            headers["x-idempotency-key"] = idempotency_key
        # Only GETs, keyed writes and writes deduplicated by their own id (an order's
        # order_id) may be sent twice: a PATCH without a key is not retried.
        retryable = method == "GET" or idempotency_key is not None or retry_safe
        limit = self.max_retries if retries is None else retries
        attempt = 0
        while True:
            attempt += 1
            headers["x-request-id"] = str(uuid.uuid4())
            try:
                return await self._once(op, method, path, headers, content, params)
            except CashfreeError as exc:
                await self.noted(op, exc)
                if not (exc.retryable and retryable) or attempt > limit:
                    raise
                wait = self.wait(attempt, exc)
                if wait is None:
                    # Cashfree wants longer than this client may wait: the caller backs off.
                    log.info("cashfree.rate_limited", op=op, error=self._redact(str(exc)))
                    raise
                log.warning(
                    "cashfree.retry",
                    op=op,
                    attempt=attempt,
                    wait_s=round(wait, 3),
                    error=self._redact(str(exc)),
                )
                await asyncio.sleep(wait)

    async def noted(self, op: str, exc: CashfreeError) -> None:
        if isinstance(exc, CashfreeRateLimited) and self._sink is not None:
            await self._sink.note(op, exc.retry_after_s)

    def wait(self, attempt: int, exc: CashfreeError) -> float | None:
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
        self,
        op: str,
        method: str,
        path: str,
        headers: dict[str, str],
        content: bytes | None,
        params: Mapping[str, str] | None,
    ) -> Any:
        request_id = headers["x-request-id"]
        try:
            resp = await self._http.request(
                method, self.base_url + path, headers=headers, content=content, params=params
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
        raise self._error(op, resp, data, request_id)

    def _error(self, op: str, resp: httpx.Response, data: Any, request_id: str) -> CashfreeError:
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
            return self._unprocessable(f"{op}: {message}", **kw)
        return CashfreeRejected(f"{op}: {message}", **kw)


class Clients:
    """What every Cashfree client shares: it owns its transports and its rate-limit sink and
    closes them together, also as an `async with`."""

    def __init__(self, sink: RateLimitSink | None, *transports: Transport) -> None:
        self._sink = sink
        self._transports = transports

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()
        if self._sink is not None:
            await self._sink.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class PgClient(Clients):
    """A client of Cashfree's PG app (`CashfreeClient`, `SubscriptionsClient`): one transport
    on the PG base URL with the PG's headers, the API version each subclass pins."""

    API_VERSION: str

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        api_version: str | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.25,
        max_backoff_s: float = 5.0,
        max_rate_limit_wait_s: float = 60.0,
        rate_limit_sink: RateLimitSink | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`base_url`: the PG base (`.../pg`). `api_version`: the class's pinned one unless
        given. `max_rate_limit_wait_s`: the longest the client sleeps to honour a 429 before
        retrying the call; a 429 asking for longer (any 429, at 0) is raised at once.
        `rate_limit_sink` is told of every 429, retried or not, and closed with the client."""
        self.base_url = base_url.rstrip("/")
        self._api = Transport(
            base_url=base_url,
            headers=pg_headers(
                client_id,
                client_secret,
                self.API_VERSION if api_version is None else api_version,
            ),
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            max_rate_limit_wait_s=max_rate_limit_wait_s,
            rate_limit_sink=rate_limit_sink,
            transport=transport,
        )
        super().__init__(rate_limit_sink, self._api)
