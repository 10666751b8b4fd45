"""HTTP Idempotency-Key handling (DESIGN §7).

The key's record is written in the same transaction as the effect, so a key is either
unused or bound to a finished answer; a crash in between leaves no half-state. A concurrent
duplicate is detected with a transaction-scoped advisory lock on the key, answered 409 at
once rather than queued behind the first request.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.db.sql import sql
from commdesk_billing.errors import DomainError, IdempotencyInProgress, IdempotencyMismatch
from commdesk_billing.problems import MEDIA_TYPE, domain_problem_body
from commdesk_billing.telemetry.metrics import IDEMPOTENT_REPLAYS

KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as Stripe and the IETF draft


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


def respond(answer: Answer) -> JSONResponse:
    """The HTTP response of a keyed request: replays say so in `Idempotent-Replayed`."""
    if answer.replayed:
        IDEMPOTENT_REPLAYS.inc()
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    media = MEDIA_TYPE if answer.status >= 400 else "application/json"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers, media_type=media)


def respond_content(status: int, content: bytes, *, replayed: bool) -> Response:
    """`respond` for an answer already rendered as JSON."""
    if replayed:
        IDEMPOTENT_REPLAYS.inc()
    return Response(
        content,
        status_code=status,
        headers={"Idempotent-Replayed": "true"} if replayed else None,
        media_type=MEDIA_TYPE if status >= 400 else "application/json",
    )


@dataclass(frozen=True)
class KeyedRequest:
    scope: str  # whose key space: the caller's subject
    key: str
    method: str
    path: str
    body: Any

    @classmethod
    def of(cls, request: Request, scope: str, key: str, body: object) -> KeyedRequest:
        """The keyed form of an HTTP request: its own method and path, and `body` as stored
        for the hash (a model is dumped in JSON mode; anything else is taken as it is, so a
        route may hash a body with secrets swapped for fingerprints)."""
        shown = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
        return cls(scope=scope, key=key, method=request.method, path=request.url.path, body=shown)

    @property
    def request_hash(self) -> str:
        canonical = json.dumps(self.body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"{self.method} {self.path}\n{canonical}".encode()).hexdigest()

    @property
    def lock_key(self) -> int:
        """A signed 64-bit advisory-lock key for (scope, key)."""
        digest = hashlib.sha256(f"{self.scope}\x00{self.key}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @property
    def operation_key(self) -> str:
        """The key the wallet operation is made idempotent by (unambiguous, bounded)."""
        digest = hashlib.sha256(f"{self.scope}\x00{self.key}".encode()).hexdigest()[:40]
        return f"http:{digest}"


Work = Callable[[AsyncConnection, str], Awaitable[Answer]]


async def _claim(conn: AsyncConnection, req: KeyedRequest) -> Answer | None:
    got = (
        await conn.execute(
            sql("SELECT pg_try_advisory_xact_lock(:k)"),
            {"k": req.lock_key},
        )
    ).scalar_one()
    if not got:
        raise in_progress()
    row = (
        await conn.execute(
            sql("""
        SELECT request_hash, response_status, response_body FROM idempotency_keys
         WHERE scope = :s AND key = :k"""),
            {"s": req.scope, "k": req.key},
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != req.request_hash:
        raise IdempotencyMismatch("this Idempotency-Key was used with a different request")
    body = row.response_body
    return Answer(
        row.response_status, json.loads(body) if isinstance(body, str) else body, replayed=True
    )


async def _store(conn: AsyncConnection, req: KeyedRequest, answer: Answer) -> None:
    await conn.execute(
        sql("""
        INSERT INTO idempotency_keys (scope, key, request_hash, method, path, response_status,
                                      response_body)
        VALUES (:s, :k, :h, :m, :p, :st, CAST(:b AS json))"""),
        {
            "s": req.scope,
            "k": req.key,
            "h": req.request_hash,
            "m": req.method,
            "p": req.path,
            "st": answer.status,
            "b": json.dumps(answer.body),
        },
    )


# A batch of keyed requests in one transaction (the wallet's debit route batches a busy
# wallet's debits, `modules/wallet/http_debits.py`): the same three steps as `run_keyed`, each
# for every request at once and as a part of one of the batch's statements, so claiming,
# looking up and storing add no round trip of their own. Parameter names are prefixed so
# they never clash with the statement's other parts.

# One row: for each lock key, in order, whether this transaction holds its lock now (a lock
# this same transaction took before is held again: two requests of one batch with one key
# both get it).
CLAIM_MANY_PART = """
    SELECT array_agg(pg_try_advisory_xact_lock(k) ORDER BY i) AS claims
      FROM unnest(CAST(:claim_keys AS bigint[])) WITH ORDINALITY AS u(k, i)"""

# The stored answers of (scope, key) pairs. Must run in a statement after the claim's: a
# statement sees what committed before it started, and only once the locks are held is
# nothing about to commit under one of these keys.
STORED_MANY_PART = """
    SELECT i.scope, i.key, i.request_hash, i.response_status,
           CAST(i.response_body AS text) AS response_body
      FROM idempotency_keys i
      JOIN unnest(CAST(:stored_scopes AS text[]), CAST(:stored_keys AS text[])) AS q(s, k)
        ON i.scope = q.s AND i.key = q.k"""

# Data-modifying: the answers of the batch's requests, stored.
STORE_MANY_PART = """
    INSERT INTO idempotency_keys (scope, key, request_hash, method, path, response_status,
                                  response_body)
    SELECT * FROM unnest(CAST(:store_scopes AS text[]), CAST(:store_keys AS text[]),
                         CAST(:store_hashes AS text[]), CAST(:store_methods AS text[]),
                         CAST(:store_paths AS text[]), CAST(:store_statuses AS integer[]),
                         CAST(:store_bodies AS json[]))
    RETURNING key"""


def claim_many_params(reqs: list[KeyedRequest]) -> dict[str, Any]:
    return {"claim_keys": [r.lock_key for r in reqs]}


def stored_many_params(reqs: list[KeyedRequest]) -> dict[str, Any]:
    return {"stored_scopes": [r.scope for r in reqs], "stored_keys": [r.key for r in reqs]}


def store_many_params(answered: list[tuple[KeyedRequest, int, bytes]]) -> dict[str, Any]:
    """Each request with its answer's status and JSON body (as the client gets it)."""
    return {
        "store_scopes": [r.scope for r, _, _ in answered],
        "store_keys": [r.key for r, _, _ in answered],
        "store_hashes": [r.request_hash for r, _, _ in answered],
        "store_methods": [r.method for r, _, _ in answered],
        "store_paths": [r.path for r, _, _ in answered],
        "store_statuses": [status for _, status, _ in answered],
        "store_bodies": [body.decode() for _, _, body in answered],
    }


def in_progress() -> IdempotencyInProgress:
    return IdempotencyInProgress(
        "a request with this Idempotency-Key is in progress; retry after it finishes"
    )


def stored_answer(req: KeyedRequest, request_hash: str, status: int, body: str) -> Answer:
    """The answer stored under `req`'s key, for this same request; a different request under
    the key is refused (`IdempotencyMismatch`), as `run_keyed` refuses it."""
    if request_hash != req.request_hash:
        raise IdempotencyMismatch("this Idempotency-Key was used with a different request")
    return Answer(status, json.loads(body), replayed=True)


async def run_keyed(engine: AsyncEngine, req: KeyedRequest, work: Work) -> Answer:
    """Run `work` once per (scope, key); later calls with the same request get its answer.

    A business error (a DomainError such as insufficient credits) is an answer too: its
    effect is rolled back, then the error is recorded under the key in a second
    transaction, so a retry with the same key gets the same error. A 5xx one (a dependency
    unavailable) is not: it is raised with nothing recorded, so a retry runs again.
    """

    async def attempt(conn: AsyncConnection) -> Answer:
        if (stored := await _claim(conn, req)) is not None:
            return stored
        answer = await work(conn, req.operation_key)
        await _store(conn, req, answer)
        return answer

    try:
        return await in_transaction(engine, attempt)
    except (IdempotencyInProgress, IdempotencyMismatch):
        raise
    except DomainError as exc:
        if exc.status >= 500:
            # A dependency was away (Cashfree, MongoDB, storage): not an answer to keep.
            # Nothing was stored under the key, so the same request goes through later.
            raise
        return await record_failure(engine, req, Answer(exc.status, domain_problem_body(exc)))


async def record_failure(engine: AsyncEngine, req: KeyedRequest, failed: Answer) -> Answer:
    """Store a business error's answer under `req`'s key, in a transaction of its own (the
    one that failed was rolled back); the answer stored before, if another request with
    the key finished in between."""

    async def record(conn: AsyncConnection) -> Answer:
        if (stored := await _claim(conn, req)) is not None:
            return stored
        await _store(conn, req, failed)
        return failed

    return await in_transaction(engine, record)


# One DELETE per batch, each its own short transaction, so pruning a day's keys never holds
# a long transaction; at most this many batches per run (the job comes back).
_PRUNE_BATCH = 5_000
_PRUNE_BATCHES_PER_RUN = 200


async def prune_expired(engine: AsyncEngine, retention: timedelta) -> int:
    """Delete stored answers older than `retention` (the scheduler's `prune_idempotency_keys`);
    returns how many went.

    Only the HTTP answer goes. What the request did keeps its own key in its own row (an
    order's `payments.idempotency_key`, a wallet operation's key on its statement line), so
    the same key sent again after this cannot charge or debit twice: the operation answers
    as already done, or refuses a different one (422 `idempotency_mismatch`)."""

    async def batch(conn: AsyncConnection) -> int:
        result = await conn.execute(
            sql("""
            DELETE FROM idempotency_keys WHERE id IN (
                SELECT id FROM idempotency_keys
                 WHERE created_at < now() - CAST(:r AS interval)
                 ORDER BY created_at LIMIT :n)"""),
            {"r": retention, "n": _PRUNE_BATCH},
        )
        return int(result.rowcount)

    total = 0
    for _ in range(_PRUNE_BATCHES_PER_RUN):
        deleted = await in_transaction(engine, batch)
        total += deleted
        if deleted < _PRUNE_BATCH:
            break
    return total
