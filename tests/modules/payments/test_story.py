"""A payment read the ways a frontend and finance read it: by the order id Cashfree's return
URL carries, with `expand`, as a timeline after a real purchase and a partial refund through
the whole stack (sandbox, worker, consumers), and staff's filtered lists and CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from commdesk_billing.modules.payments.listing import CSV_COLUMNS
from commdesk_billing.security.jwt import Role
from tests.harness.stack import Stack

PROBLEM = "application/problem+json"


def _h(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def _staff(stack: Stack, role: Role = Role.finance_admin) -> str:
    return stack.token(f"{role.value}-1", role)


async def _timeline_with(
    stack: Stack, tok: str, ref: str, wanted: set[str], timeout_s: float = 20
) -> dict[str, Any]:
    """The timeline once every wanted entry type is in it (documents are issued by a
    consumer after the fact)."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = await stack.api.get(f"/v1/payments/{ref}/timeline", headers=_h(tok))
        assert r.status_code == 200, r.text
        body = r.json()
        if wanted <= {e["type"] for e in body["entries"]}:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"timeline lacks {wanted}: {body}")


async def test_a_payment_is_read_by_its_order_id_as_by_its_id(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok)
    by_id = await stack.api.get(f"/v1/payments/{order['id']}", headers=_h(tok))
    by_order = await stack.api.get(f"/v1/payments/{order['order_id']}", headers=_h(tok))
    assert by_id.status_code == by_order.status_code == 200, by_order.text
    assert by_order.json() == by_id.json() and by_order.json()["order_id"] == order["order_id"]
    assert "invoice" not in by_order.json() and "refunds" not in by_order.json()
    # Staff read it by order id too; another member is refused as by id.
    staff = await stack.api.get(f"/v1/payments/{order['order_id']}", headers=_h(_staff(stack)))
    assert staff.status_code == 200 and staff.json()["id"] == order["id"]
    for ref in (order["order_id"], order["id"]):
        other = await stack.api.get(f"/v1/payments/{ref}", headers=_h(stack.token()))
        assert other.status_code == 403 and other.json()["code"] == "forbidden", ref
    for unknown in ("cdb_" + uuid.uuid4().hex, str(uuid.uuid4())):
        r = await stack.api.get(f"/v1/payments/{unknown}", headers=_h(tok))
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM, unknown
        assert r.json()["code"] == "not_found"
    for malformed in ("ab", "cdb_" + "x" * 42, "has.dot", "a%20b"):
        r = await stack.api.get(f"/v1/payments/{malformed}", headers=_h(tok))
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, malformed
        assert r.json()["code"] == "validation_error"
    r = await stack.api.get(f"/v1/payments/{order['order_id']}/timeline", headers=_h(tok))
    assert r.status_code == 200 and r.json()["payment_id"] == order["id"]
    assert [e["type"] for e in r.json()["entries"]] == ["order_created", "status_changed"]
    other = await stack.api.get(
        f"/v1/payments/{order['order_id']}/timeline", headers=_h(stack.token())
    )
    assert other.status_code == 403


async def test_the_timeline_of_a_purchase_and_a_partial_refund(stack: Stack) -> None:
    tok, paid = await stack.credited()
    await _timeline_with(stack, tok, paid["id"], {"invoice"})
    r = await stack.refund(paid["id"], amount_paise=10000)
    assert r.status_code == 202, r.text
    refund = await stack.wait_refund(r.json()["id"], {"SUCCESS"})
    body = await _timeline_with(stack, tok, paid["order_id"], {"credit_note"})
    entries = body["entries"]
    assert body["payment_id"] == paid["id"] and body["status"] == "CREDITED"
    # In time order; an attempt, stamped by Cashfree to the second, after the opening.
    times = [datetime.fromisoformat(e["at"]) for e in entries if e["type"] != "attempt"]
    assert times == sorted(times)
    of = {t: [e for e in entries if e["type"] == t] for t in {e["type"] for e in entries}}
    assert set(of) == {
        "order_created",
        "status_changed",
        "attempt",
        "webhook",
        "credits",
        "refund_requested",
        "refund_status_changed",
        "invoice",
        "credit_note",
    }
    assert of["order_created"][0]["data"]["amount_paise"] == 30000
    assert [(e["data"]["from"], e["data"]["to"]) for e in of["status_changed"]] == [
        ("CREATED", "ACTIVE"),
        ("ACTIVE", "PAID"),
        ("PAID", "CREDITED"),
    ]
    assert all("reason" not in e["data"] for e in of["status_changed"])  # the buyer's view
    [attempt] = of["attempt"]
    assert attempt["data"]["status"] == "SUCCESS" and attempt["data"]["amount_paise"] == 30000
    assert attempt["data"]["payment_group"] == "upi"
    assert any(w["data"]["event_type"] == "PAYMENT_SUCCESS_WEBHOOK" for w in of["webhook"])
    lines = {e["data"]["transaction_type"]: e["data"]["credits"] for e in of["credits"]}
    taken = refund["base_credits"] + refund["bonus_credits"]
    assert lines["purchase"] == paid["base_credits"] == 3000
    assert lines["bonus"] == paid["bonus_credits"] == 200
    assert lines["hold"] == lines["refund"] == taken > 0
    [asked] = of["refund_requested"]
    assert asked["ref"] == refund["id"] and asked["data"]["amount_paise"] == 10000
    assert [e["data"]["to"] for e in of["refund_status_changed"]] == ["SUCCESS"]
    [invoice], [note] = of["invoice"], of["credit_note"]
    assert invoice["data"]["total_paise"] == 30000 and note["data"]["total_paise"] == 10000
    assert note["data"]["refund_id"] == refund["id"]
    order = [e["type"] for e in entries]
    assert order[:3] == ["order_created", "status_changed", "attempt"]
    assert order.index("attempt") < order.index("invoice") < order.index("refund_requested")
    assert order.index("refund_requested") < order.index("credit_note")
    # Staff see the reasons written to the state moves.
    staff = await stack.api.get(f"/v1/payments/{paid['id']}/timeline", headers=_h(_staff(stack)))
    moves = [e for e in staff.json()["entries"] if e["type"] == "status_changed"]
    assert all(e["data"]["reason"] for e in moves)
    assert len(staff.json()["entries"]) == len(entries)

    # expand: the same invoice and refund as their own routes give.
    r = await stack.api.get(
        f"/v1/payments/{paid['order_id']}?expand=invoice,refunds", headers=_h(tok)
    )
    assert r.status_code == 200, r.text
    assert r.json()["invoice"]["id"] == invoice["ref"]
    assert r.json()["invoice"]["total_paise"] == 30000
    assert [x["id"] for x in r.json()["refunds"]] == [refund["id"]]
    assert r.json()["refunds"][0]["amount_paise"] == 10000
    only = await stack.api.get(f"/v1/payments/{paid['id']}?expand=refunds", headers=_h(tok))
    assert "invoice" not in only.json() and len(only.json()["refunds"]) == 1
    support = _staff(stack, Role.support)
    r = await stack.api.get(f"/v1/payments/{paid['id']}?expand=invoice", headers=_h(support))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await stack.api.get(f"/v1/payments/{paid['id']}?expand=refunds", headers=_h(support))
    assert r.status_code == 200 and len(r.json()["refunds"]) == 1
    r = await stack.api.get(f"/v1/payments/{paid['id']}?expand=ledger", headers=_h(tok))
    assert r.status_code == 400 and r.json()["code"] == "invalid_expand"
    assert r.json()["unknown"] == ["ledger"]
    r = await stack.api.get(
        f"/v1/payments/{paid['id']}?expand=invoice&expand=refunds", headers=_h(tok)
    )
    assert r.status_code == 400 and r.json()["code"] == "duplicate_parameter"


async def test_an_unpaid_order_expands_to_no_invoice_and_no_refunds(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok)
    r = await stack.api.get(f"/v1/payments/{order['id']}?expand=invoice,refunds", headers=_h(tok))
    assert r.status_code == 200 and r.json()["invoice"] is None and r.json()["refunds"] == []


def _iso(at: datetime) -> str:
    return quote(at.isoformat())


async def _list(stack: Stack, tok: str, query: str) -> list[dict[str, Any]]:
    r = await stack.api.get(f"/v1/payments?{query}", headers=_h(tok))
    assert r.status_code == 200, (query, r.text)
    return list(r.json()["data"])


async def test_staff_list_everyones_payments_with_filters(stack: Stack) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    a_sub, b_sub = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    a, b = stack.token(a_sub), stack.token(b_sub)
    a_failed = await stack.buy(a)
    await stack.pay(a_failed, "card", "failure")
    await stack.wait_status(a, a_failed["id"], {"FAILED"})
    a_open = await stack.buy(a, pack_code="pack_500")
    b_paid = await stack.buy(b)
    await stack.pay(b_paid, "upi", "success")
    await stack.wait_status(b, b_paid["id"], {"CREDITED"})
    staff = _staff(stack, Role.auditor)
    since = f"created_from={_iso(start)}&limit=200"

    everyone = {p["id"] for p in await _list(stack, staff, since)}
    assert {a_failed["id"], a_open["id"], b_paid["id"]} <= everyone
    assert [p["id"] for p in await _list(stack, staff, f"user={a_sub}")] == [
        a_open["id"],
        a_failed["id"],
    ]
    failed = await _list(stack, staff, f"{since}&status=FAILED")
    assert a_failed["id"] in {p["id"] for p in failed}
    assert {p["status"] for p in failed} == {"FAILED"}
    both = await _list(stack, staff, f"user={a_sub}&status=FAILED,ACTIVE")
    assert [p["id"] for p in both] == [a_open["id"], a_failed["id"]]
    upi = await _list(stack, staff, f"{since}&method=upi")
    assert b_paid["id"] in {p["id"] for p in upi} and a_failed["id"] not in {p["id"] for p in upi}
    assert {p["payment_method"] for p in upi} == {"upi"}
    card = await _list(stack, staff, f"user={a_sub}&method=card")
    assert [p["id"] for p in card] == [a_failed["id"]]
    # created_from is inclusive, created_to exclusive.
    second = datetime.fromisoformat(a_open["created_at"])
    later = await _list(stack, staff, f"user={a_sub}&created_from={_iso(second)}")
    assert [p["id"] for p in later] == [a_open["id"]]
    earlier = await _list(
        stack, staff, f"user={a_sub}&created_from={_iso(start)}&created_to={_iso(second)}"
    )
    assert [p["id"] for p in earlier] == [a_failed["id"]]
    # An offset other than UTC means the same instant.
    ist = second.astimezone(datetime.fromisoformat("2026-01-01T00:00:00+05:30").tzinfo)
    assert [
        p["id"] for p in await _list(stack, staff, f"user={a_sub}&created_from={_iso(ist)}")
    ] == [a_open["id"]]
    assert await _list(stack, staff, "user=nobody-here") == []
    # The keyset cursor walks a filtered list.
    r = await stack.api.get(f"/v1/payments?user={a_sub}&limit=1", headers=_h(staff))
    nxt = r.json()["next_cursor"]
    assert [p["id"] for p in r.json()["data"]] == [a_open["id"]] and nxt
    rest = await _list(stack, staff, f"user={a_sub}&limit=1&cursor={nxt}")
    assert [p["id"] for p in rest] == [a_failed["id"]]

    # A member: their own only, filters apply, `user` refused.
    assert [p["id"] for p in await _list(stack, a, "")] == [a_open["id"], a_failed["id"]]
    assert [p["id"] for p in await _list(stack, a, "status=FAILED")] == [a_failed["id"]]
    r = await stack.api.get(f"/v1/payments?user={b_sub}", headers=_h(a))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await stack.api.get(f"/v1/payments?user={a_sub}", headers=_h(a))
    assert r.status_code == 403

    for query, parameter in (
        ("status=PAIDD", "status"),
        ("status=PAID,", "status"),
        ("method=UPI!", "method"),
        ("created_from=yesterday", "created_from"),
        ("created_from=2026-12-01T00:00:00", "created_from"),
        ("created_to=0001-01-01T00:00:00%2B23:59", "created_to"),
        (f"created_from={_iso(second)}&created_to={_iso(second)}", "created_from"),
        ("limit=201", "limit"),
    ):
        r = await stack.api.get(f"/v1/payments?{query}", headers=_h(staff))
        assert r.status_code == 400 and r.headers["content-type"] == PROBLEM, (query, r.text)
        assert r.json()["code"] == "invalid_payment_filter", query
        assert r.json()["parameter"] == parameter, query
    r = await stack.api.get("/v1/payments?limit=5001&format=csv", headers=_h(staff))
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = await stack.api.get("/v1/payments?status=PAID&status=FAILED", headers=_h(staff))
    assert r.status_code == 400 and r.json()["code"] == "duplicate_parameter"


async def test_finance_exports_payments_as_csv_page_by_page(stack: Stack) -> None:
    sub = f"csv-{uuid.uuid4().hex}"
    tok = stack.token(sub)
    first = await stack.buy(tok)
    second = await stack.buy(tok, pack_code="pack_1000")
    staff = _staff(stack)
    as_json = await _list(stack, staff, f"user={sub}")
    r = await stack.api.get(f"/v1/payments?user={sub}&format=csv&limit=1", headers=_h(staff))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == CSV_COLUMNS and len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    want = as_json[0]
    assert row["id"] == want["id"] == second["id"] and row["user"] == sub
    for column in ("order_id", "status", "kind", "pack_code", "currency"):
        assert row[column] == str(want[column]), column
    for column in ("amount_paise", "taxable_paise", "gst_amount_paise", "credits"):
        assert int(row[column]) == want[column], column
    assert row["amount_paise"] == "100000" and row["paid_at"] == ""
    assert datetime.fromisoformat(row["created_at"]) == datetime.fromisoformat(want["created_at"])
    link = r.headers["link"]
    assert link.startswith("</v1/payments?") and link.endswith('>; rel="next"')
    r2 = await stack.api.get(link[1 : link.index(">")], headers=_h(staff))
    assert r2.status_code == 200 and "link" not in r2.headers
    rows2 = list(csv.reader(io.StringIO(r2.text)))
    assert rows2[0] == CSV_COLUMNS and [x[0] for x in rows2[1:]] == [first["id"]]
    # Staff only; and the format is checked.
    r = await stack.api.get("/v1/payments?format=csv", headers=_h(tok))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await stack.api.get("/v1/payments?format=xml", headers=_h(staff))
    assert r.status_code == 400 and r.json()["code"] == "invalid_report_format"
