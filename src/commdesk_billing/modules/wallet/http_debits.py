"""The debit route's work: debit requests of one wallet, each with its Idempotency-Key, in
one transaction (a batch of one when the wallet is not busy; `batcher.py` forms the others).

Each request is answered exactly as `run_keyed` and `consume_credits` answer it alone: its
key claimed (409 while another transaction holds it), its stored answer replayed (or 422 for
another request under the key), then the wallet's existence (404) and the caller's right to
spend from it (403), then the debit (201, or 409 for too few credits), and that answer
stored under its key. One request's refusal is its own; the others go on.

Five round trips for the whole batch, each statement on the driver under SQLAlchemy's
connection (`db.driver`):
  BEGIN;
  the keys' advisory locks and the wallet's row lock, in one statement;
  the stored answers, the wallet's FIFO lots and the keys already debited, in one statement
  (after the locks: what it reads cannot change under them);
  the debits' journals, lines, lots and wallet row, with every answer stored, in one;
  COMMIT.
A database error anywhere fails every request of the batch, and nothing of it is stored.
"""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.driver import driver_of
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import DomainError, IdempotencyMismatch, NotFound
from commdesk_billing.idempotency import keys
from commdesk_billing.idempotency.keys import Answer, KeyedRequest
from commdesk_billing.modules.wallet import auth, debits, writer
from commdesk_billing.modules.wallet import repository as repo
from commdesk_billing.modules.wallet.batcher import Batcher
from commdesk_billing.modules.wallet.debits import Debit, DebitOutcome
from commdesk_billing.modules.wallet.schemas import operation_body, render
from commdesk_billing.problems import domain_problem_body
from commdesk_billing.security.jwt import Principal
from commdesk_billing.telemetry import aftercommit
from commdesk_billing.telemetry.metrics import WALLET_OPERATIONS


@dataclass(frozen=True)
class DebitCall:
    """One debit request: its key, who asks, the debit, and the request's context (its
    request id goes into the problem bodies made for it, as in any request)."""

    keyed: KeyedRequest
    caller: Principal
    debit: Debit
    context: contextvars.Context


@dataclass(frozen=True)
class Reply:
    """An answer as the client gets it: status, JSON body, and whether it is a replay."""

    status: int
    content: bytes
    replayed: bool = False


Outcome = Reply | BaseException


async def run_batch(
    engine: AsyncEngine, wallet_id: uuid.UUID, calls: list[DebitCall]
) -> list[Outcome]:
    """Every call's outcome: a reply, or the exception its request raises (409 in progress,
    422 for a key reused with another body, a dependency away: nothing stored for those)."""
    try:
        return await in_transaction(engine, lambda conn: _attempt(conn, wallet_id, calls))
    except DomainError as exc:
        if exc.status >= 500:
            raise
        # A business error of the batch as a whole (not of one debit): an answer, recorded
        # under each key as `run_keyed` records one (the transaction rolled back).
        out: list[Outcome] = []
        for call in calls:
            body = call.context.run(domain_problem_body, exc)
            try:
                answer = await keys.record_failure(engine, call.keyed, Answer(exc.status, body))
            except Exception as failed:
                out.append(failed)
            else:
                out.append(_reply(answer))
        return out


def _reply(answer: Answer) -> Reply:
    return Reply(answer.status, render(answer.body), answer.replayed)


def _failed(call: DebitCall, exc: DomainError) -> Outcome:
    """A business refusal is an answer (stored under the key); a dependency away is not,
    and neither is a key reused for another debit (its statement line says so once its
    stored answer was pruned): as `run_keyed` raises it, it is refused and not stored, so
    the key's own request sent again still gets its debit, not this refusal."""
    if exc.status >= 500 or isinstance(exc, IdempotencyMismatch):
        return exc
    return Reply(exc.status, render(call.context.run(domain_problem_body, exc)))


def _debited(conn: AsyncConnection, call: DebitCall, outcome: DebitOutcome) -> Outcome:
    if outcome.error is not None:
        return _failed(call, outcome.error)
    result = outcome.result
    assert result is not None
    if not result.replayed:
        # Counted once the batch commits: `in_transaction` may run this attempt again (a
        # serialization failure, a lost connection), or it may roll back after this point.
        aftercommit.count(conn, WALLET_OPERATIONS.labels("debit", "ok"))
    return Reply(201, render(operation_body(result.wallet, result.line)))


async def _attempt(
    conn: AsyncConnection, wallet_id: uuid.UUID, calls: list[DebitCall]
) -> list[Outcome]:
    driver = await driver_of(conn)
    reqs = [c.keyed for c in calls]
    wallet, claimed = await repo.lock_wallet_with(
        conn, driver, wallet_id, keys.CLAIM_MANY_PART, keys.claim_many_params(reqs)
    )
    outcomes: dict[int, Outcome] = {}
    live: list[int] = []
    for i, got in enumerate(claimed["claims"]):
        if got:
            live.append(i)
        else:
            outcomes[i] = keys.in_progress()
    # Asked of the wallet before knowing which requests are replays: reading a lot or two
    # more than the debits draw is harmless.
    needs = {wallet_id: sum(calls[i].debit.credits for i in live)} if wallet and live else {}
    lots, done, stored_rows = await repo.fifo_lots_with(
        conn,
        driver,
        needs,
        [calls[i].debit.idempotency_key for i in live],
        keys.STORED_MANY_PART,
        keys.stored_many_params([reqs[i] for i in live]),
    )
    stored = {(r["scope"], r["key"]): r for r in stored_rows}

    first_of: dict[tuple[str, str], int] = {}  # a key's first request in this batch
    duplicates: dict[int, int] = {}  # a later request with the same key and body -> the first
    fresh: list[tuple[int, Debit]] = []
    to_store: list[int] = []
    for i in live:
        call = calls[i]
        ident = (call.keyed.scope, call.keyed.key)
        if (row := stored.get(ident)) is not None:
            try:
                answer = keys.stored_answer(
                    call.keyed, row["request_hash"], row["response_status"], row["response_body"]
                )
                outcomes[i] = _reply(answer)
            except IdempotencyMismatch as exc:
                outcomes[i] = exc
            continue
        if ident in first_of:
            # The same key twice in one batch: one debit, and the second gets its answer,
            # as it would have had it arrived after the first finished.
            if calls[first_of[ident]].keyed.request_hash != call.keyed.request_hash:
                outcomes[i] = IdempotencyMismatch(
                    "this Idempotency-Key was used with a different request"
                )
            else:
                duplicates[i] = first_of[ident]
            continue
        first_of[ident] = i
        try:
            if wallet is None:
                raise NotFound(f"wallet {wallet_id} does not exist")
            await auth.authorize_wallet_spend(conn, call.caller, wallet)
        except DomainError as exc:
            outcomes[i] = _failed(call, exc)
            to_store.append(i)
            continue
        fresh.append((i, call.debit))

    batch = writer.OperationBatch([wallet] if wallet else [])
    if fresh:
        assert wallet is not None
        debit_outcomes, valid = debits.checked([d for _, d in fresh])
        batch = await debits.plan(conn, valid, debit_outcomes, {wallet.id: wallet}, lots, done)
        for n, (i, _) in enumerate(fresh):
            outcomes[i] = _debited(conn, calls[i], debit_outcomes[n])
            to_store.append(i)
    answered = [
        (calls[i].keyed, out.status, out.content)
        for i in to_store
        if isinstance(out := outcomes[i], Reply)
    ]
    also = [(keys.STORE_MANY_PART, keys.store_many_params(answered))] if answered else []
    written = await batch.flush_on_driver(conn, driver, also)
    if written != len(answered):
        raise RuntimeError(f"{len(answered)} answers to store, {written} stored")
    if wallet is not None and fresh:
        await debits.after_debits(conn, {wallet.id: wallet}, batch)
    for i, first in duplicates.items():
        earlier = outcomes[first]
        outcomes[i] = (
            Reply(earlier.status, earlier.content, replayed=True)
            if isinstance(earlier, Reply)
            else earlier
        )
    return [outcomes[i] for i in range(len(calls))]


DebitBatcher = Batcher[uuid.UUID, DebitCall, Reply]


def batcher_of(state: Any) -> DebitBatcher:
    """The process's debit batcher, kept on an app's state and made on first use: batches
    form among the requests one process serves."""
    batcher: DebitBatcher | None = getattr(state, "debit_batcher", None)
    if batcher is None:
        batcher = make_batcher(state, state.settings.debit_batch_max)
        state.debit_batcher = batcher
    return batcher


def make_batcher(state: Any, max_batch: int) -> DebitBatcher:
    """A batcher whose runs use the app's engine (read when a batch runs)."""

    async def run(wallet_id: uuid.UUID, calls: list[DebitCall]) -> list[Outcome]:
        return await run_batch(state.engine, wallet_id, calls)

    return Batcher(run, max_batch)
