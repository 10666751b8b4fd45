"""Settlement reports (cashfree.md §7): `POST /pg/settlements`, `GET /pg/orders/{id}/
settlements`, `POST /pg/settlement/recon`, `POST /pg/recon`. Rate-limited as Get Settlements."""

from __future__ import annotations

from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import Call, Reply, api
from commdesk_billing.gateway.sandbox.errors import not_found
from commdesk_billing.gateway.sandbox.split.queries import page, query


def settlements(call: Call) -> Reply:
    q = query(call.body)
    split = call.sandbox.split
    split.tick()
    rows = [
        split.reports.settlement_entity(s)
        for s in sorted(split.store.settlements.values(), key=lambda s: s.cf_settlement_id)
        if (q.settlement_ids is None or s.cf_settlement_id in q.settlement_ids)
        and (q.utrs is None or s.utr in q.utrs)
        and (q.statuses is None or s.status in q.statuses)
        and q.in_range(s.initiated_on)
    ]
    return Reply(200, page(rows, q))


def order_settlement(call: Call) -> Reply:
    order = call.sandbox.order(call.param("order_id"))
    split = call.sandbox.split
    split.tick()
    entity = split.reports.order_settlement(order)
    if entity is None:
        raise not_found("settlement_not_found", "order is not paid; it has no settlement")
    return Reply(200, entity)


def settlement_recon(call: Call) -> Reply:
    q = query(call.body, some_filter=True)
    split = call.sandbox.split
    split.tick()
    chosen = sorted(
        (
            s
            for s in split.store.settlements.values()
            if (q.settlement_ids is None or s.cf_settlement_id in q.settlement_ids)
            and (q.utrs is None or s.utr in q.utrs)
            and q.in_range(s.initiated_on)
        ),
        key=lambda s: s.cf_settlement_id,
    )
    # Each settlement's own rows: the events it paid (one event under two settlements is
    # listed under each, as a settlement's report shows what that settlement paid).
    listed = [
        (s, split.store.events[event_id])
        for s in chosen
        for event_id in s.event_ids
        if event_id in split.store.events
    ]
    listed.sort(key=lambda pair: (pair[0].cf_settlement_id, pair[1].at, pair[1].event_id))
    rows = [split.reports.row(e, mode_key="payment_mode", settlement=s) for s, e in listed]
    return Reply(200, page(rows, q))


def recon(call: Call) -> Reply:
    q = query(call.body, dates_required=True)
    split = call.sandbox.split
    split.tick()
    events = sorted(
        (e for e in split.store.events.values() if q.in_range(e.at)),
        key=lambda e: (e.at, e.event_id),
    )
    rows = [split.reports.row(e, mode_key="payment_group") for e in events]
    return Reply(200, page(rows, q))


routes = [
    Route("/pg/settlements", api(settlements, rate="get_settlements"), methods=["POST"]),
    Route(
        "/pg/orders/{order_id}/settlements",
        api(order_settlement, rate="get_settlements"),
        methods=["GET"],
    ),
    Route("/pg/settlement/recon", api(settlement_recon, rate="get_settlements"), methods=["POST"]),
    Route("/pg/recon", api(recon, rate="get_settlements"), methods=["POST"]),
]
