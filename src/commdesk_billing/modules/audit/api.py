"""The audit log, read by auditors and finance_admin: `GET /v1/audit-logs`, newest first,
cursor-paginated, filtered by actor, action, target and time. Nothing here writes: entries
are written by each privileged action, in its own transaction (`service.record`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Engine
from commdesk_billing.errors import AuditRangeInvalid
from commdesk_billing.modules.audit import auth, service
from commdesk_billing.modules.audit.model import AuditFilter
from commdesk_billing.modules.audit.schemas import (
    ActionPattern,
    ActorPattern,
    AuditEntryOut,
    AuditPage,
    TargetIdPattern,
    TargetTypePattern,
)
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import errors
from commdesk_billing.security.timestamps import Timestamp

router = APIRouter(prefix="/v1", tags=["audit"])

_CURSOR = "audit"


@router.get(
    "/audit-logs",
    response_model=AuditPage,
    responses=errors(
        {
            403: "Only auditor and finance_admin read the audit log (`forbidden`)",
            422: "A filter not valid (`validation_error`), `from` not before `to` "
            "(`audit_range_invalid`), or a `cursor` this API did not give out "
            "(`invalid_cursor`)",
        }
    ),
    summary="The audit log, newest first (auditor, finance_admin)",
)
async def list_audit_logs(
    engine: Engine,
    caller: Caller,
    actor: Annotated[str | None, Query(pattern=ActorPattern)] = None,
    action: Annotated[str | None, Query(pattern=ActionPattern)] = None,
    target_type: Annotated[str | None, Query(pattern=TargetTypePattern)] = None,
    target_id: Annotated[str | None, Query(pattern=TargetIdPattern)] = None,
    from_: Annotated[
        Timestamp | None, Query(alias="from", description="Included; with a UTC offset")
    ] = None,
    to: Annotated[Timestamp | None, Query(description="Excluded; with a UTC offset")] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPage:
    """Every privileged action (grants, refunds, payee changes, finding decisions, console
    sign-ins...) with who did it, from where, and the target before and after. Filters are
    exact matches and combine (`actor`, `action`, `target_type`, `target_id`, the
    half-open time range `from`..`to`); pages of `limit`, continued with `next_cursor`."""
    auth.authorize_read(caller)
    if from_ is not None and to is not None and from_ >= to:
        raise AuditRangeInvalid("`from` must be earlier than `to`")
    before = decode_cursor(_CURSOR, cursor) if cursor else None
    where = AuditFilter(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=from_,
        until=to,
    )

    async def read(conn: AsyncConnection) -> AuditPage:
        rows = await service.entries(conn, where, before=before, limit=limit + 1)
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return AuditPage(
            data=[AuditEntryOut.of(e) for e in page],
            next_cursor=encode_cursor(_CURSOR, last.created_at, last.id) if last else None,
        )

    return await in_transaction(engine, read)
