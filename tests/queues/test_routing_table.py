"""The routing table's arithmetic and the per-queue dispatchers, without a broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from commdesk_billing.queues.envelope import Envelope, new_envelope
from commdesk_billing.queues.routing import (
    BatchDispatch,
    Dispatch,
    Table,
    UnknownMessageType,
    per_queue,
)
from commdesk_billing.queues.runtime import TwoPhase

TABLE = Table(frozenset({("q1", "a"), ("q1", "b"), ("q2", "a"), ("q3", "c")}))


def test_destinations_types_and_queues() -> None:
    assert TABLE.destinations("a") == ("q1", "q2")
    assert TABLE.destinations("c") == ("q3",)
    assert TABLE.destinations("nobody") == ()
    assert TABLE.types("q1") == ("a", "b")
    assert TABLE.queues() == ("q1", "q2", "q3")
    assert TABLE.routed("q1", "b") and not TABLE.routed("q2", "b")


def _env(kind: str) -> Envelope:
    return new_envelope(kind, {"n": 1})


def test_dispatch_calls_the_types_handler_and_refuses_others() -> None:
    seen: list[str] = []

    async def plain(_conn: object, env: Envelope) -> None:
        seen.append(f"plain:{env.type}")

    class Fetching(TwoPhase):
        async def fetch(self, envelope: Envelope) -> object:
            return f"fetched:{envelope.type}"

        async def apply(self, conn: object, envelope: Envelope, fetched: object) -> None:  # type: ignore[override]
            seen.append(str(fetched))

    d = Dispatch("q", {"a": plain, "b": Fetching()})

    async def run(kind: str) -> None:
        env = _env(kind)
        fetched = await d.fetch(env)
        await d.apply(None, env, fetched)  # type: ignore[arg-type]

    asyncio.run(run("a"))
    asyncio.run(run("b"))
    assert seen == ["plain:a", "fetched:b"]
    with pytest.raises(UnknownMessageType, match="q has no handler for message type 'z'"):
        asyncio.run(run("z"))
    assert UnknownMessageType.code == "unknown_message_type"


def test_batch_dispatch_keeps_order_and_refuses_unrouted_types_alone() -> None:
    calls: list[list[uuid.UUID]] = []

    async def many(_conn: object, envs: list[Envelope]) -> list[Exception | None]:
        calls.append([e.id for e in envs])
        return [None if e.payload["n"] == 1 else ValueError("refused") for e in envs]

    envs = [_env("a"), _env("x"), _env("a")]
    outcomes = asyncio.run(BatchDispatch("q", {"a": many})(None, envs))  # type: ignore[arg-type]
    assert calls == [[envs[0].id, envs[2].id]]
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], UnknownMessageType)


def test_per_queue_builds_one_dispatcher_per_queue() -> None:
    async def h(_conn: object, _env: Envelope) -> None:
        return None

    built = per_queue({("q1", "a"): h, ("q1", "b"): h, ("q2", "a"): h})
    assert set(built) == {"q1", "q2"}
    assert isinstance(built["q1"], Dispatch) and set(built["q1"].by_type) == {"a", "b"}


def test_any_type_takes_what_no_route_names_and_is_never_a_destination() -> None:
    from commdesk_billing.queues.routing import ANY_TYPE

    table = Table(frozenset({("ext", "ext.requested"), ("ext", ANY_TYPE), ("q1", "a")}))
    assert table.destinations(ANY_TYPE) == ()
    assert table.destinations("a") == ("q1",)
    seen: list[str] = []

    async def named(_conn: object, env: Envelope) -> None:
        seen.append(f"named:{env.type}")

    async def anything(_conn: object, env: Envelope) -> None:
        seen.append(f"any:{env.type}")

    d = Dispatch("ext", {"ext.requested": named, ANY_TYPE: anything})

    async def run(kind: str) -> None:
        env = _env(kind)
        await d.apply(None, env, await d.fetch(env))  # type: ignore[arg-type]

    asyncio.run(run("ext.requested"))
    asyncio.run(run("their.own.type"))
    assert seen == ["named:ext.requested", "any:their.own.type"]


def test_a_batch_handler_serving_several_types_gets_them_in_one_call() -> None:
    """One call per handler, in arrival order: its locks are taken in its own order once, not
    in one run per type (two such runs in one transaction can deadlock with another batch)."""
    calls: list[list[str]] = []

    async def many(_conn: object, envs: list[Envelope]) -> list[Exception | None]:
        calls.append([e.type for e in envs])
        return [None] * len(envs)

    envs = [_env("a"), _env("b"), _env("a"), _env("c")]
    dispatch = BatchDispatch("q", {"a": many, "b": many, "c": many})
    outcomes = asyncio.run(dispatch(None, envs))  # type: ignore[arg-type]
    assert calls == [["a", "b", "a", "c"]]
    assert outcomes == [None] * 4
