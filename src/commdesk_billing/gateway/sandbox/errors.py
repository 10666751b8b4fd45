"""Cashfree's error body `{"message", "code", "type"[, "help"]}`, with the type its status implies.

Status -> type follows the SDK's error models (cashfree.md §8.1): 401 is `authentication_error`,
422 `idempotency_error`, 429 `rate_limit_error`, 5xx `api_error`, every other 4xx
`invalid_request_error`.
"""

from __future__ import annotations

from typing import Any

HELP = "The local Cashfree sandbox answered this; see its README for the codes it uses."


def error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 422:
        return "idempotency_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "api_error"
    return "invalid_request_error"


def error_body(status: int, code: str, message: str, *, with_help: bool = True) -> dict[str, Any]:
    """PG's body has a `help` line; Payouts' `ErrorV2` is only type, code and message."""
    body = {"message": message, "code": code, "type": error_type(status)}
    return body | {"help": HELP} if with_help else body


class CashfreeError(Exception):
    """An expected refusal, answered as Cashfree would answer it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self, *, with_help: bool = True) -> dict[str, Any]:
        return error_body(self.status, self.code, self.message, with_help=with_help)


def bad_request(code: str, message: str) -> CashfreeError:
    return CashfreeError(400, code, message)


def not_found(code: str, message: str) -> CashfreeError:
    return CashfreeError(404, code, message)
