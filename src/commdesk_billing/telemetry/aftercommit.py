"""Counters of what a transaction did, counted only once it committed.

A transaction may run more than once (`db.engine.in_transaction` re-runs the whole work after
a serialization failure, a deadlock or a lost connection) or roll back: a counter incremented
inside it would count a payment twice, or count one that never happened. Code inside a
transaction calls `count(conn, COUNTER.labels(...))` instead; `in_transaction` calls
`committed(conn)` after COMMIT returned, so each figure is counted once, for work that is in
the database.

The pending increments live in the connection's `info` dictionary (SQLAlchemy's, one per
DBAPI connection). Every attempt of `in_transaction` starts with `discard(conn)`: what a
failed attempt, or a transaction run outside `in_transaction`, left on that connection is
dropped before anything is counted. Nothing is touched when an attempt fails: its connection
may be invalidated by then (reading its `info` would reconnect), and a connection
invalidated takes its pending list with it. At most `_MAX_PENDING` are kept.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

_KEY = "commdesk_billing.metrics.after_commit"
# A transaction counts a handful of things; a batch of 50 messages a few hundred at most.
_MAX_PENDING = 10_000


class Incrementable(Protocol):
    def inc(self, amount: float = 1, exemplar: Any = None) -> None: ...


def _pending(conn: AsyncConnection) -> list[tuple[Incrementable, float]]:
    found = conn.info.get(_KEY)
    if found is None:
        found = []
        conn.info[_KEY] = found
    return found


def count(conn: AsyncConnection, counter: Incrementable, amount: float = 1) -> None:
    """Increment `counter` by `amount` once the transaction on `conn` commits."""
    if amount < 0:
        raise ValueError("a counter only goes up")
    pending = _pending(conn)
    if len(pending) < _MAX_PENDING:
        pending.append((counter, amount))


def committed(conn: AsyncConnection) -> None:
    """The transaction on `conn` committed: count what it did."""
    pending = conn.info.pop(_KEY, None) or []
    for counter, amount in pending:
        counter.inc(amount)


def discard(conn: AsyncConnection) -> None:
    """A new transaction starts on `conn`: count nothing an earlier one left pending."""
    if not conn.invalidated:
        conn.info.pop(_KEY, None)
