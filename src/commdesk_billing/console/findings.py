"""The console's reconciliation pages (`/console/findings...`): the findings with filters,
one finding with its trail, and a finance admin's explain / resolve forms.

Reads and moves go through `modules/reconciliation/service` with the staff member's
principal, under the module's own role rules (`reconciliation/auth`: finance_admin and the
auditor read, finance_admin alone acts), so the audit entries
(`reconciliation.finding.explained` / `.resolved`) are the API's. A form carries a key drawn
with the page: a double submit (a double click, a reload) is answered from the first
(`idempotency/keys.run_keyed`, as the API's Idempotency-Key), never a second move or a
"conflict" for the first one's own effect."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.responses import RedirectResponse, Response

from commdesk_billing.console import forms, web
from commdesk_billing.console.analytics import inr
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import DomainError, FindingNotFound, Forbidden
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, run_keyed
from commdesk_billing.modules.reconciliation import auth, service
from commdesk_billing.modules.reconciliation.model import MOVES, Kind, Source, State
from commdesk_billing.modules.reconciliation.schemas import NoteIn
from commdesk_billing.pagination import decode_cursor, encode_cursor

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE = 50
_CURSOR = "rf"  # the API's cursor kind: a cursor works in either
_NOTICES = {"explained": "Finding explained.", "resolved": "Finding resolved."}


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def _forbidden(request: Request, viewer: web.Viewer, exc: Forbidden) -> Response:
    return web.render(request, "forbidden.html", status=403, viewer=viewer, detail=exc.detail)


@dataclass(frozen=True)
class Filters:
    state: State | None
    source: Source | None
    kind: Kind | None


def _filters(request: Request) -> tuple[dict[str, str], Filters, dict[str, str]]:
    """What the query asked (as shown back), the parsed filters, and what was wrong."""
    q = request.query_params
    shown = {k: q.get(k, "")[:40] for k in ("state", "source", "kind")}
    errors: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    for name, enum in (("state", State), ("source", Source), ("kind", Kind)):
        raw = shown[name]
        parsed[name] = None
        if raw:
            try:
                parsed[name] = enum(raw)
            except ValueError:
                errors[name] = f"choose a {name} from the list"
    return shown, Filters(**parsed), errors


@router.get("/findings")
async def findings_list(request: Request) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    try:
        auth.may_read(viewer.signed_in.principal)
    except Forbidden as exc:
        return _forbidden(request, viewer, exc)
    shown, chosen, errors = _filters(request)
    cursor = request.query_params.get("cursor", "")[:200]
    after = None
    if cursor:
        try:
            after = decode_cursor(_CURSOR, cursor)
        except DomainError:
            errors["cursor"] = "that page link is not valid; start from the first page"
    rows: list[Any] = []
    more = False
    if not errors:
        rows = await in_transaction(
            _engine(request),
            lambda conn: service.findings(
                conn,
                state=chosen.state,
                source=chosen.source,
                kind=chosen.kind,
                after=after,
                limit=PAGE + 1,
            ),
        )
        more = len(rows) > PAGE
        rows = rows[:PAGE]
    next_query = None
    if more:
        kept = {k: v for k, v in shown.items() if v}
        kept["cursor"] = encode_cursor(_CURSOR, rows[-1].created_at, rows[-1].id)
        next_query = kept
    return web.render(
        request,
        "findings.html",
        status=422 if errors else 200,
        viewer=viewer,
        shown=shown,
        errors=errors,
        rows=rows,
        next_query=next_query,
        paged=bool(cursor),
        options={
            "state": [s.value for s in State],
            "source": [s.value for s in Source],
            "kind": [k.value for k in Kind],
        },
    )


async def _finding_page(
    request: Request,
    viewer: web.Viewer,
    finding_id: uuid.UUID,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    try:
        found, trail = await in_transaction(
            _engine(request), lambda conn: service.finding(conn, finding_id)
        )
    except FindingNotFound:
        return web.render(
            request, "not_found.html", status=404, viewer=viewer, what=f"finding {finding_id}"
        )
    may_act = True
    try:
        auth.may_act(viewer.signed_in.principal)
    except Forbidden:
        may_act = False
    state = State(found.state)
    notice = _NOTICES.get(request.query_params.get("done", ""))
    return web.render(
        request,
        "finding.html",
        status=status,
        viewer=viewer,
        f=found,
        trail=trail,
        difference=(
            None
            if found.expected_paise is None or found.actual_paise is None
            else inr(found.actual_paise - found.expected_paise)
        ),
        may_explain=may_act and state in MOVES[State.explained],
        may_resolve=may_act and state in MOVES[State.resolved],
        read_only=not may_act,
        error=error,
        notice=notice,
        form=form or {"to": "", "note": ""},
        explain_key=str(uuid.uuid4()),
        resolve_key=str(uuid.uuid4()),
    )


@router.get("/findings/{finding_id}")
async def finding_detail(request: Request, finding_id: str) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    try:
        auth.may_read(viewer.signed_in.principal)
    except Forbidden as exc:
        return _forbidden(request, viewer, exc)
    parsed = forms.parse_uuid(finding_id)
    if parsed is None:
        return web.render(request, "not_found.html", status=404, viewer=viewer, what="that finding")
    return await _finding_page(request, viewer, parsed)


def _note(fields: forms.Fields) -> str:
    """The note as the API takes it (`NoteIn`: 3 to 2000 characters, not only blanks,
    nothing PostgreSQL cannot store); a browser's CRLF line ends made LF."""
    raw = fields.get("note", "").replace("\r\n", "\n").strip()
    try:
        return NoteIn(note=raw).note
    except ValidationError as exc:
        raise forms.FormError("note", "The note needs 3 to 2000 characters") from exc


async def _move(request: Request, finding_id: str, to: State) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    caller = viewer.signed_in.principal
    try:
        auth.may_act(caller)
    except Forbidden as exc:
        return _forbidden(request, viewer, exc)
    parsed = forms.parse_uuid(finding_id)
    if parsed is None:
        return web.render(request, "not_found.html", status=404, viewer=viewer, what="that finding")
    fields: forms.Fields = {}
    try:
        fields = await forms.read_form(request)
        note = _note(fields)
        key = forms.idempotency_key(fields)
    except forms.FormError as exc:
        shown = {"to": to.value, "note": fields.get("note", "")[:2000]}
        return await _finding_page(
            request, viewer, parsed, error=exc.message, form=shown, status=422
        )
    act = service.explain if to is State.explained else service.resolve

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        moved = await act(conn, caller, parsed, note)
        return Answer(200, {"id": str(moved.id), "state": moved.state})

    keyed = KeyedRequest.of(request, caller.sub, key, {"note": note})
    shown = {"to": to.value, "note": note}
    try:
        answer = await run_keyed(_engine(request), keyed, work)
    except DomainError as exc:  # the same form in flight, or its key sent with another note
        return await _finding_page(
            request, viewer, parsed, error=exc.detail, form=shown, status=exc.status
        )
    if answer.status == 404:
        return web.render(
            request, "not_found.html", status=404, viewer=viewer, what=f"finding {parsed}"
        )
    if answer.status >= 400:  # e.g. already resolved by someone else: the state conflict
        detail = str(answer.body.get("detail", "the finding could not be moved"))
        return await _finding_page(
            request, viewer, parsed, error=detail, form=shown, status=answer.status
        )
    return RedirectResponse(f"/console/findings/{parsed}?done={to.value}", status_code=303)


@router.post("/findings/{finding_id}/explain")
async def explain(request: Request, finding_id: str) -> Response:
    return await _move(request, finding_id, State.explained)


@router.post("/findings/{finding_id}/resolve")
async def resolve(request: Request, finding_id: str) -> Response:
    return await _move(request, finding_id, State.resolved)
