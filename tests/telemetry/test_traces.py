"""One purchase, one trace: the API's request span, the outbox relay's producer span and the
worker's consumer span, linked parent to child across the outbox row and RabbitMQ, as an
OTLP/HTTP collector on loopback receives them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from commdesk_billing.telemetry import tracing
from tests.harness.otlp import Collector, ReceivedSpan, otlp_collector
from tests.harness.stack import StackFactory


@pytest.fixture
def collector() -> Iterator[Collector]:
    # Requested before `stacks`, so it outlives the stack (whose last spans leave at stop).
    with otlp_collector() as c:
        yield c


def _chain(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    """`span` and its ancestors, up to the root (or the first parent not received)."""
    chain = [span]
    while chain[-1].parent_span_id and chain[-1].parent_span_id in by_id:
        chain.append(by_id[chain[-1].parent_span_id])
    return chain


async def test_one_purchase_is_one_trace_from_the_api_through_the_worker(
    collector: Collector, stacks: StackFactory
) -> None:
    stack = await stacks(otel_exporter_otlp_endpoint=collector.url)
    tok = stack.token()
    order = await stack.buy(tok)
    await stack.pay(order)
    await stack.wait_status(tok, order["id"], {"CREDITED"})

    # The credit's consumer span, with every ancestor received: they are exported in
    # batches, so flush and wait for them. The API's and the worker's processes export on
    # their own schedule (the flush here is this process's): on a loaded machine a parent
    # was seen to arrive after 20 s, so the wait is a minute (it ends as soon as all came).
    credit: ReceivedSpan | None = None
    chain: list[ReceivedSpan] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.to_thread(tracing.flush)
        spans = collector.snapshot()
        by_id = {s.span_id: s for s in spans}
        credits = [s for s in spans if s.name == "wallet.credit process"]
        if credits:
            credit = credits[0]
            chain = _chain(credit, by_id)
            if not chain[-1].parent_span_id:
                break
        await asyncio.sleep(0.2)
    assert credit is not None, [s.name for s in collector.snapshot()]
    assert not chain[-1].parent_span_id, (
        "the chain of parents is not complete",
        [(s.service, s.name, s.kind) for s in chain],
        sorted({(s.service, s.name) for s in collector.snapshot()}),
    )

    # One trace, from the API request to the credit.
    assert {s.trace_id for s in chain} == {credit.trace_id}
    root = chain[-1]
    assert (root.service, root.kind) == ("commdesk-billing-api", "SERVER"), root
    assert root.name in {"POST /v1/webhooks/cashfree", "POST /v1/payments/orders"}, root.name
    assert root.attributes["http.response.status_code"] in (200, 201, 202)
    # Root first: the request wrote the outbox row; the relay published it (producer, child
    # of the request); the worker handled it (consumer, child of the producer), and so on
    # for every hop until the credit.
    path = [(s.service, s.kind) for s in reversed(chain)]
    assert path[0] == ("commdesk-billing-api", "SERVER")
    hops = path[1:]
    assert len(hops) >= 2 and len(hops) % 2 == 0, path
    for producer, consumer in zip(hops[::2], hops[1::2], strict=True):
        assert producer == ("commdesk-billing-worker", "PRODUCER"), path
        assert consumer == ("commdesk-billing-worker", "CONSUMER"), path
    by_id = {s.span_id: s for s in chain}
    for s in chain[:-1]:
        parent = by_id[s.parent_span_id]
        if s.kind == "CONSUMER":
            # The queue the relay published to is the one the worker consumed.
            assert parent.kind == "PRODUCER"
            assert (
                parent.attributes["messaging.destination.name"]
                == s.attributes["messaging.destination.name"]
            )
            assert parent.attributes["messaging.message.id"] == s.attributes["messaging.message.id"]
    assert credit.attributes["commdesk.message.type"] == "payment.paid"
