"""The console's reconciliation and analytics pages over real HTTP (no browser): filters and
their validation, explain / resolve through the forms (the service's audit entries, one
move for a double submit, the state conflict on the page), the auditor read-only, the
analytics page's figures and CSV against the API's own; and the chart geometry."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.console import charts
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.analytics.periods import today
from commdesk_billing.modules.reconciliation import service
from commdesk_billing.modules.reconciliation.model import Kind, Source
from commdesk_billing.security.jwt import Role
from tests.conftest import auth
from tests.console.conftest import Console, Staff


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no csrf_token field on the page"
    return match.group(1)


def _key(page: str, form: str) -> str:
    match = re.search(
        rf'id="{form}-form".*?name="idempotency_key" value="([^"]+)"', page, flags=re.S
    )
    assert match, f"no {form} form on the page"
    return match.group(1)


async def _plant(engine: AsyncEngine, n: int = 1) -> list[uuid.UUID]:
    """Findings as a reconciler run records them (`service.record`): gateway amount
    differences of ₹10.00."""
    refs = [f"payment:cdb_test_{uuid.uuid4().hex[:10]}" for _ in range(n)]
    seen = [
        service.observed(
            Source.gateway,
            Kind.amount_differs,
            ref,
            "Cashfree settled ₹290.00 for a ₹300.00 payment",
            refs={"order_id": ref.split(":")[1]},
            expected_paise=30_000,
            actual_paise=29_000,
        )
        for ref in refs
    ]
    await in_transaction(engine, lambda conn: service.record(conn, seen, datetime.now(UTC)))
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM reconciliation_findings WHERE reference = ANY(:r)"),
            {"r": refs},
        )
        return [r[0] for r in rows]


async def test_findings_pages_explain_resolve_and_the_auditor_reads_only(
    console: Console, staff: Staff, engine: AsyncEngine
) -> None:
    admin, auditor, support = (
        await staff("finance_admin"),
        await staff("auditor"),
        await staff("support"),
    )
    [finding_id] = await _plant(engine)
    async with console.client() as c:
        assert (await console.sign_in(c, admin)).status_code == 303
        listed = await c.get("/console/findings", params={"state": "open", "source": "gateway"})
        assert listed.status_code == 200 and f"/console/findings/{finding_id}" in listed.text
        assert "₹300.00" in listed.text and "₹290.00" in listed.text
        bad = await c.get("/console/findings", params={"kind": "nonsense", "cursor": "zz"})
        assert bad.status_code == 422 and "choose a kind from the list" in bad.text
        # The database is the session's: other tests' findings may be listed, never this
        # open one under another state.
        resolved = await c.get("/console/findings", params={"state": "resolved"})
        assert resolved.status_code == 200 and str(finding_id) not in resolved.text
        assert (await c.get("/console/findings/not-a-uuid")).status_code == 404
        assert (await c.get(f"/console/findings/{uuid.uuid4()}")).status_code == 404

        page = await c.get(f"/console/findings/{finding_id}")
        assert page.status_code == 200 and 'id="explain-form"' in page.text
        csrf = _csrf(page.text)
        url = f"/console/findings/{finding_id}/explain"
        # No note worth the name: said on the page, nothing moved.
        short = await c.post(
            url,
            data={"csrf_token": csrf, "note": "  ", "idempotency_key": _key(page.text, "explain")},
        )
        assert short.status_code == 422 and "The note needs 3 to 2000 characters" in short.text
        # Without the CSRF token: the guard's 403.
        forged = await c.post(url, data={"note": "forged", "idempotency_key": str(uuid.uuid4())})
        assert forged.status_code == 403 and forged.json()["code"] == "csrf_failed"

        form = {
            "csrf_token": csrf,
            "note": "Cashfree's fee\r\nfor this merchant is flat",
            "idempotency_key": _key(page.text, "explain"),
        }
        first, second = await c.post(url, data=form), await c.post(url, data=form)
        assert (first.status_code, second.status_code) == (303, 303)
        assert first.headers["location"] == f"/console/findings/{finding_id}?done=explained"
        shown = await c.get(first.headers["location"])
        assert 'id="notice"' in shown.text and "Finding explained." in shown.text
        assert 'id="finding-state">explained<' in shown.text
        # The same note under a new key: the service's conflict, shown on the page.
        again = await c.post(url, data={**form, "idempotency_key": str(uuid.uuid4())})
        assert again.status_code == 409 and 'id="error"' in again.text
        assert "cannot be explained from there" in again.text

        done = await c.post(
            f"/console/findings/{finding_id}/resolve",
            data={
                "csrf_token": csrf,
                "note": "fee agreement filed with finance",
                "idempotency_key": _key(shown.text, "resolve"),
            },
        )
        assert done.status_code == 303
        closed = await c.get(done.headers["location"])
        assert 'id="closed"' in closed.text and "fee agreement filed with finance" in closed.text

    async with console.client() as c:
        assert (await console.sign_in(c, auditor)).status_code == 303
        page = await c.get(f"/console/findings/{finding_id}")
        assert page.status_code == 200 and 'id="read-only"' in page.text
        assert "explain-form" not in page.text and "resolve-form" not in page.text
        refused = await c.post(
            f"/console/findings/{finding_id}/resolve",
            data={
                "csrf_token": _csrf(page.text),
                "note": "auditor tries",
                "idempotency_key": str(uuid.uuid4()),
            },
        )
        assert refused.status_code == 403 and 'id="forbidden"' in refused.text
    async with console.client() as c:
        assert (await console.sign_in(c, support)).status_code == 303
        assert (await c.get("/console/findings")).status_code == 403
        assert (await c.get("/console/analytics")).status_code == 403

    async with engine.connect() as conn:
        trail = (
            await conn.execute(
                text(
                    "SELECT from_state, to_state, actor, actor_role, note"
                    " FROM reconciliation_finding_transitions WHERE finding_id = :f"
                    " ORDER BY created_at"
                ),
                {"f": finding_id},
            )
        ).all()
        audited = (
            await conn.execute(
                text(
                    "SELECT action, actor_sub, actor_role, details->>'note' FROM audit_logs"
                    " WHERE target_id = :f ORDER BY created_at, id"
                ),
                {"f": str(finding_id)},
            )
        ).all()
    assert [tuple(r) for r in trail] == [
        (None, "open", "reconciler", "reconciler", trail[0].note),
        (
            "open",
            "explained",
            f"console:{admin}",
            "finance_admin",
            "Cashfree's fee\nfor this merchant is flat",
        ),
        (
            "explained",
            "resolved",
            f"console:{admin}",
            "finance_admin",
            "fee agreement filed with finance",
        ),
    ]
    assert [tuple(r) for r in audited] == [
        (
            "reconciliation.finding.explained",
            f"console:{admin}",
            "finance_admin",
            "Cashfree's fee\nfor this merchant is flat",
        ),
        (
            "reconciliation.finding.resolved",
            f"console:{admin}",
            "finance_admin",
            "fee agreement filed with finance",
        ),
    ]


async def test_findings_are_paged(console: Console, staff: Staff, engine: AsyncEngine) -> None:
    from commdesk_billing.console import findings

    planted = await _plant(engine, findings.PAGE + 3)
    admin = await staff("auditor")
    async with console.client() as c:
        assert (await console.sign_in(c, admin)).status_code == 303
        first = await c.get("/console/findings", params={"kind": "amount_differs"})
        older = re.search(r'href="/console/findings\?([^"]+)" id="older"', first.text)
        assert older, "no link to the older findings"
        second = await c.get("/console/findings?" + older.group(1).replace("&amp;", "&"))
        assert second.status_code == 200 and "Back to the newest" in second.text
        pages = [
            re.findall(r"/console/findings/([0-9a-f-]{36})", page.text) for page in (first, second)
        ]
        # The database may hold other tests' findings: ours are all there, none twice.
        assert len(pages[0]) == findings.PAGE and not set(pages[0]) & set(pages[1])
        assert {str(p) for p in planted} <= set(pages[0] + pages[1])


async def test_analytics_page_and_csv_agree_with_the_api(
    console: Console, staff: Staff, token: Callable[..., str]
) -> None:
    admin = await staff("auditor")
    last = today()
    first = last - timedelta(days=29)
    bearer = auth(token(Role.auditor))
    async with console.client() as c, httpx.AsyncClient(base_url=console.url, timeout=20) as api:
        assert (await console.sign_in(c, admin)).status_code == 303
        page = await c.get("/console/analytics")
        assert page.status_code == 200, page.text[:500]
        assert f'value="{first}"' in page.text and f'value="{last}"' in page.text
        assert page.text.count("<svg") == 7 and "<script" not in page.text
        assert " style=" not in page.text
        summary = (
            await api.get(
                "/v1/analytics/summary",
                params={"from": str(first), "to": str(last)},
                headers=bearer,
            )
        ).json()
        collected = re.search(r'id="fig-collected">([^<]+)<', page.text)
        assert collected and collected.group(1) == "₹" + _rupees(
            summary["totals"]["collected_paise"]
        )
        for report in ("trial-balance", "gst-summary", "daily", "payments"):
            mine = await c.get(
                f"/console/analytics/{report}.csv", params={"from": str(first), "to": str(last)}
            )
            theirs = await api.get(
                f"/v1/analytics/{report}",
                params={"from": str(first), "to": str(last), "format": "csv"},
                headers=bearer,
            )
            assert mine.status_code == theirs.status_code == 200
            assert mine.content == theirs.content
            assert mine.headers["content-disposition"] == theirs.headers["content-disposition"]
        for params, wanted in (
            ({"from": str(last), "to": str(first)}, "from is after to"),
            ({"from": "2026-02-30", "to": str(last)}, "from is not a calendar date"),
            ({"from": "2024-01-01", "to": "2025-12-31"}, "at most 366"),
            ({"from": "yesterday", "to": ""}, "from must be a date"),
        ):
            bad = await c.get("/console/analytics", params=params)
            assert bad.status_code == 422 and wanted in bad.text, (params, bad.text[-800:])
        missing = await c.get("/console/analytics/ledger.csv")
        assert missing.status_code == 404
        bad_csv = await c.get("/console/analytics/daily.csv", params={"from": "x", "to": "y"})
        assert bad_csv.status_code == 422


def _rupees(paise: int) -> str:
    from commdesk_billing.modules.invoices.words import rupees

    return rupees(paise)


def test_chart_geometry() -> None:
    assert [charts.nice_ceiling(v) for v in (0, 1, 3, 7, 11, 30_000, 30_001)] == [
        1,
        1,
        5,
        10,
        20,
        50_000,
        50_000,
    ]
    days = [date(2026, 12, 1) + timedelta(days=n) for n in range(4)]
    bars = charts.stacked_bars(
        "c",
        "t",
        days,
        [charts.Series("a", [1, 0, 3, None]), charts.Series("b", [1, 2, 0, 0])],
        axis=str,
        label=str,
        total="",
    )
    # Heights add up per day: the tallest day (3) against a top of 5.
    assert len(bars.bars) == 4 and not bars.empty
    tallest = [b for b in bars.bars if b.title.startswith("03 Dec")]
    assert len(tallest) == 1 and round(tallest[0].h) == round(charts.PLOT_H * 3 / 5)
    assert [t.label for t in bars.y_ticks] == ["0", "1", "2", "3", "4", "5"]
    assert [t.label for t in bars.x_ticks] == ["01 Dec", "02 Dec", "03 Dec", "04 Dec"]
    line = charts.lines(
        "l",
        "t",
        days,
        [charts.Series("r", [5000, None, 10_000, 0])],
        axis=str,
        label=str,
        total="",
        top=10_000,
    )
    # A gap splits the line: two points before it would be one, so only the run after it.
    assert [len(x.points.split()) for x in line.lines] == [2] and len(line.dots) == 3
    money = charts.lines(
        "m", "t", days, [charts.Series("r", [0, 5, 0, 0])], axis=str, label=str, total=""
    )
    assert len(money.dots) == 1 and money.y_ticks[-1].label == "5"
    empty = charts.lines(
        "e", "t", days, [charts.Series("r", [None] * 4)], axis=str, label=str, total=""
    )
    assert empty.empty and not empty.lines
