"""Typed failures of calls to Cashfree.

`retryable` separates "try the same call again later" (5xx, 429, timeouts, connection
failures) from "Cashfree refused this request" (4xx): callers retry the first and record the
second.
"""

from __future__ import annotations

from typing import Any


class CashfreeError(Exception):
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        type_: str | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.type = type_
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status else "no response"
        return f"cashfree {where} {self.code or ''} {self.type or ''}: {self.message}".strip()


class CashfreeUnavailable(CashfreeError):
    """5xx, a timeout or a broken connection: the outcome of the call is unknown."""

    retryable = True


class CashfreeRateLimited(CashfreeError):
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class CashfreeRejected(CashfreeError):
    """A 4xx other than 429: the request itself was refused."""


class CashfreeAuthError(CashfreeRejected):
    pass


class CashfreeNotFound(CashfreeRejected):
    pass


class CashfreeConflict(CashfreeRejected):
    """409: e.g. an order with this order_id exists already."""


class CashfreeIdempotencyError(CashfreeRejected):
    """422: the idempotency key was used with another body."""


class CashfreeBadResponse(CashfreeError):
    """A 2xx whose body we cannot read as the documented shape: treat the outcome as unknown."""

    retryable = True
