"""SQL on the tables this module owns: `webhook_events`, `webhook_endpoints`,
`webhook_deliveries` and `webhook_attempts`."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.events.model import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    Event,
    Outgoing,
)
from commdesk_billing.modules.events.vocabulary import PublicEvent

_EVENT = "id, event_type, data, occurred_at, created_at"
_ENDPOINT = """id, url, description, event_types, enabled, secret_sealed, failing_since,
    disabled_reason, created_by, created_at, updated_at"""
_DELIVERY = """d.id, d.endpoint_id, d.event_id, e.event_type, d.status, d.attempts,
    d.next_attempt_at, d.give_up_at, d.last_status_code, d.last_error, d.delivered_at,
    d.created_at, d.updated_at"""


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value)


def _event(row: Any) -> Event:
    return Event(
        id=row.id,
        event_type=row.event_type,
        data=_json(row.data),
        occurred_at=row.occurred_at,
        created_at=row.created_at,
    )


def _endpoint(row: Any) -> Endpoint:
    data = row._asdict()
    data["event_types"] = list(data["event_types"] or [])
    return Endpoint(**data)


def _delivery(row: Any) -> Delivery:
    data = {k: getattr(row, k) for k in Delivery.__dataclass_fields__}
    data["status"] = DeliveryStatus(data["status"])
    return Delivery(**data)


# --- events -----------------------------------------------------------------------------


async def insert_event(conn: AsyncConnection, e: PublicEvent) -> bool:
    """False when the event is recorded already (its message consumed twice)."""
    row = (
        await conn.execute(
            sql("""
        INSERT INTO webhook_events (id, event_type, data, occurred_at)
        VALUES (:id, :t, CAST(:d AS jsonb), :at)
        ON CONFLICT (id) DO NOTHING RETURNING id"""),
            {"id": e.id, "t": e.type, "d": json.dumps(e.data), "at": e.occurred_at},
        )
    ).first()
    return row is not None


async def get_event(conn: AsyncConnection, event_id: uuid.UUID) -> Event | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_EVENT} FROM webhook_events WHERE id = :id"), {"id": event_id}
        )
    ).first()
    return _event(row) if row else None


async def list_events(
    conn: AsyncConnection,
    *,
    event_type: str | None,
    created_after: datetime | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Event]:
    rows = (
        await conn.execute(
            sql(f"""
        SELECT {_EVENT} FROM webhook_events
         WHERE (CAST(:t AS text) IS NULL OR event_type = :t)
           AND (CAST(:after AS timestamptz) IS NULL OR created_at > :after)
           AND (CAST(:bt AS timestamptz) IS NULL OR (created_at, id) < (:bt, :bid))
         ORDER BY created_at DESC, id DESC LIMIT :n"""),
            {
                "t": event_type,
                "after": created_after,
                "bt": before[0] if before else None,
                "bid": before[1] if before else None,
                "n": limit,
            },
        )
    ).all()
    return [_event(r) for r in rows]


# --- endpoints --------------------------------------------------------------------------


async def insert_endpoint(
    conn: AsyncConnection,
    *,
    url: str,
    description: str,
    event_types: list[str],
    secret_sealed: str,
    created_by: str,
) -> Endpoint:
    row = (
        await conn.execute(
            sql(f"""
        INSERT INTO webhook_endpoints (id, url, description, event_types, secret_sealed,
                                       created_by)
        VALUES (:id, :url, :d, :types, :s, :by) RETURNING {_ENDPOINT}"""),
            {
                "id": uuid.uuid4(),
                "url": url,
                "d": description,
                "types": event_types,
                "s": secret_sealed,
                "by": created_by,
            },
        )
    ).one()
    return _endpoint(row)


async def get_endpoint(
    conn: AsyncConnection, endpoint_id: uuid.UUID, *, lock: bool = False
) -> Endpoint | None:
    row = (
        await conn.execute(
            sql(
                f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE id = :id"
                + (" FOR UPDATE" if lock else "")
            ),
            {"id": endpoint_id},
        )
    ).first()
    return _endpoint(row) if row else None


async def list_endpoints(
    conn: AsyncConnection, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Endpoint]:
    rows = (
        await conn.execute(
            sql(f"""
        SELECT {_ENDPOINT} FROM webhook_endpoints
         WHERE CAST(:bt AS timestamptz) IS NULL OR (created_at, id) < (:bt, :bid)
         ORDER BY created_at DESC, id DESC LIMIT :n"""),
            {"bt": before[0] if before else None, "bid": before[1] if before else None, "n": limit},
        )
    ).all()
    return [_endpoint(r) for r in rows]


async def update_endpoint(
    conn: AsyncConnection,
    endpoint_id: uuid.UUID,
    *,
    url: str,
    description: str,
    event_types: list[str],
    enabled: bool,
) -> Endpoint:
    """Enabling clears why it was disabled and its failing streak (a fresh start)."""
    row = (
        await conn.execute(
            sql(f"""
        UPDATE webhook_endpoints
           SET url = :url, description = :d, event_types = :types, enabled = :enabled,
               disabled_reason = CASE WHEN :enabled THEN NULL ELSE disabled_reason END,
               failing_since = CASE WHEN :enabled AND NOT enabled THEN NULL
                                    ELSE failing_since END,
               updated_at = now()
         WHERE id = :id RETURNING {_ENDPOINT}"""),
            {
                "id": endpoint_id,
                "url": url,
                "d": description,
                "types": event_types,
                "enabled": enabled,
            },
        )
    ).one()
    return _endpoint(row)


async def set_secret(conn: AsyncConnection, endpoint_id: uuid.UUID, sealed: str) -> Endpoint:
    row = (
        await conn.execute(
            sql(f"""
        UPDATE webhook_endpoints SET secret_sealed = :s, updated_at = now()
         WHERE id = :id RETURNING {_ENDPOINT}"""),
            {"id": endpoint_id, "s": sealed},
        )
    ).one()
    return _endpoint(row)


async def delete_endpoint(conn: AsyncConnection, endpoint_id: uuid.UUID) -> bool:
    """Its deliveries and their attempts go with it (ON DELETE CASCADE); the events stay."""
    result = await conn.execute(
        sql("DELETE FROM webhook_endpoints WHERE id = :id"), {"id": endpoint_id}
    )
    return result.rowcount == 1


async def note_success(conn: AsyncConnection, endpoint_id: uuid.UUID) -> None:
    await conn.execute(
        sql("""
        UPDATE webhook_endpoints SET failing_since = NULL
         WHERE id = :id AND failing_since IS NOT NULL"""),
        {"id": endpoint_id},
    )


async def note_failure(
    conn: AsyncConnection, endpoint_id: uuid.UUID, now: datetime, disable_after: timedelta | None
) -> bool:
    """The endpoint's failing streak starts (or goes on); past `disable_after` without a
    success it is disabled. True when this call disabled it."""
    row = (
        await conn.execute(
            sql("""SELECT enabled, failing_since FROM webhook_endpoints
                    WHERE id = :id FOR UPDATE"""),
            {"id": endpoint_id},
        )
    ).first()
    if row is None:
        return False
    since: datetime = row.failing_since or now
    disabling = bool(row.enabled and disable_after is not None and since <= now - disable_after)
    await conn.execute(
        sql("""
        UPDATE webhook_endpoints
           SET failing_since = :since,
               enabled = enabled AND NOT :disabling,
               disabled_reason = CASE WHEN :disabling THEN :reason ELSE disabled_reason END,
               updated_at = CASE WHEN :disabling THEN now() ELSE updated_at END
         WHERE id = :id"""),
        {
            "id": endpoint_id,
            "since": since,
            "disabling": disabling,
            "reason": f"every delivery failed since {since.isoformat()}",
        },
    )
    return disabling


# --- deliveries -------------------------------------------------------------------------


async def insert_deliveries(
    conn: AsyncConnection, event: PublicEvent, now: datetime, window: timedelta
) -> int:
    """One delivery of `event` to every enabled endpoint that wants its type; a second
    call adds none (the unique (endpoint, event) pair)."""
    result = await conn.execute(
        sql("""
        INSERT INTO webhook_deliveries (id, endpoint_id, event_id, status, next_attempt_at,
                                        give_up_at)
        SELECT gen_random_uuid(), e.id, :event, 'pending', :now, :until
          FROM webhook_endpoints e
         WHERE e.enabled AND (cardinality(e.event_types) = 0 OR :t = ANY(e.event_types))
        ON CONFLICT (endpoint_id, event_id) DO NOTHING"""),
        {"event": event.id, "t": event.type, "now": now, "until": now + window},
    )
    return int(result.rowcount)


async def claim_due(
    conn: AsyncConnection,
    now: datetime,
    lease_until: datetime,
    limit: int,
    per_endpoint: int,
    skip: frozenset[uuid.UUID] = frozenset(),
) -> list[Outgoing]:
    """Due deliveries of enabled endpoints, at most `per_endpoint` of each (a receiver that
    is down, with a backlog, takes only its share of a round), each with one more attempt
    counted and leased until `lease_until`; none of the endpoints in `skip`. SKIP LOCKED:
    two senders never take one row."""
    rows = (
        await conn.execute(
            sql(f"""
        WITH due AS (
            SELECT x.id FROM webhook_endpoints ep
             CROSS JOIN LATERAL (
                 SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
                  WHERE d.endpoint_id = ep.id AND d.status = 'pending'
                    AND d.next_attempt_at <= :now
                  ORDER BY d.next_attempt_at LIMIT :per FOR UPDATE SKIP LOCKED) x
             WHERE ep.enabled AND NOT ep.id = ANY(CAST(:skip AS uuid[]))
             ORDER BY x.next_attempt_at LIMIT :n),
        claimed AS (
            UPDATE webhook_deliveries d
               SET attempts = d.attempts + 1, next_attempt_at = :lease, updated_at = now()
              FROM due WHERE d.id = due.id
            RETURNING d.*)
        SELECT {_DELIVERY}, ep.url, ep.secret_sealed, e.data, e.occurred_at,
               e.created_at AS event_created_at
          FROM claimed d JOIN webhook_events e ON e.id = d.event_id
          JOIN webhook_endpoints ep ON ep.id = d.endpoint_id
         ORDER BY d.created_at"""),
            {
                "now": now,
                "lease": lease_until,
                "n": limit,
                "per": per_endpoint,
                "skip": sorted(skip),
            },
        )
    ).all()
    return [
        Outgoing(
            delivery=_delivery(r),
            url=r.url,
            secret_sealed=r.secret_sealed,
            event=Event(
                id=r.event_id,
                event_type=r.event_type,
                data=_json(r.data),
                occurred_at=r.occurred_at,
                created_at=r.event_created_at,
            ),
        )
        for r in rows
    ]


async def record_attempt(
    conn: AsyncConnection,
    d: Delivery,
    *,
    at: datetime,
    duration_ms: int,
    status_code: int | None,
    error: str | None,
    retry_at: datetime | None,
    succeeded: bool,
) -> bool:
    """The attempt's log row and the delivery's new state: succeeded; pending again until
    `retry_at`; or failed for good (`retry_at` None). Only the attempt that claimed the row
    records its outcome (`attempts` matches)."""
    status = "succeeded" if succeeded else ("pending" if retry_at is not None else "failed")
    result = await conn.execute(
        sql("""
        UPDATE webhook_deliveries
           SET status = :status, next_attempt_at = :retry_at, last_status_code = :code,
               last_error = :error,
               delivered_at = CASE WHEN :status = 'succeeded' THEN :at ELSE delivered_at END,
               updated_at = now()
         WHERE id = :id AND status = 'pending' AND attempts = :attempts"""),
        {
            "id": d.id,
            "attempts": d.attempts,
            "status": status,
            "retry_at": retry_at,
            "code": status_code,
            "error": error[:500] if error else None,
            "at": at,
        },
    )
    if result.rowcount != 1:
        return False
    await conn.execute(
        sql("""
        INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, duration_ms,
                                      status_code, error)
        VALUES (:id, :n, :at, :ms, :code, :error)"""),
        {
            "id": d.id,
            "n": d.attempts,
            "at": at,
            "ms": max(0, duration_ms),
            "code": status_code,
            "error": error[:500] if error else None,
        },
    )
    return True


async def get_delivery(conn: AsyncConnection, delivery_id: uuid.UUID) -> Delivery | None:
    row = (
        await conn.execute(
            sql(f"""SELECT {_DELIVERY} FROM webhook_deliveries d
                     JOIN webhook_events e ON e.id = d.event_id WHERE d.id = :id"""),
            {"id": delivery_id},
        )
    ).first()
    return _delivery(row) if row else None


async def list_deliveries(
    conn: AsyncConnection,
    endpoint_id: uuid.UUID,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Delivery]:
    rows = (
        await conn.execute(
            sql(f"""
        SELECT {_DELIVERY} FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
         WHERE d.endpoint_id = :ep
           AND (CAST(:bt AS timestamptz) IS NULL OR (d.created_at, d.id) < (:bt, :bid))
         ORDER BY d.created_at DESC, d.id DESC LIMIT :n"""),
            {
                "ep": endpoint_id,
                "bt": before[0] if before else None,
                "bid": before[1] if before else None,
                "n": limit,
            },
        )
    ).all()
    return [_delivery(r) for r in rows]


async def attempts_of(
    conn: AsyncConnection, delivery_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[Attempt]]:
    rows = (
        await conn.execute(
            sql("""
        SELECT delivery_id, attempt, attempted_at, duration_ms, status_code, error
          FROM webhook_attempts WHERE delivery_id = ANY(CAST(:ids AS uuid[]))
         ORDER BY delivery_id, id"""),
            {"ids": delivery_ids},
        )
    ).all()
    out: dict[uuid.UUID, list[Attempt]] = {i: [] for i in delivery_ids}
    for r in rows:
        out[r.delivery_id].append(
            Attempt(
                attempt=r.attempt,
                attempted_at=r.attempted_at,
                duration_ms=r.duration_ms,
                status_code=r.status_code,
                error=r.error,
            )
        )
    return out


async def replay(
    conn: AsyncConnection, delivery_id: uuid.UUID, now: datetime, window: timedelta
) -> bool:
    """Due again now, with a new retry window, whatever it ended as."""
    result = await conn.execute(
        sql("""
        UPDATE webhook_deliveries
           SET status = 'pending', next_attempt_at = :now, give_up_at = :until,
               updated_at = now()
         WHERE id = :id"""),
        {"id": delivery_id, "now": now, "until": now + window},
    )
    return result.rowcount == 1
