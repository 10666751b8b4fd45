"""Allow and deny lists: an allow-listed user, device or IP is not scored; a deny-listed
one is blocked (the `deny_list` rule). Kept by finance, every change audited."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import FraudListConflict, InvalidListEntry, NotFound
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.fraud import repository as repo
from commdesk_billing.security.jwt import Principal


def _normalized(kind: str, value: str) -> str:
    if kind == "user":
        try:
            return str(uuid.UUID(value))
        except ValueError as exc:
            raise InvalidListEntry("a user entry is billing's user id (a UUID)") from exc
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError as exc:
            raise InvalidListEntry("an ip entry is one IPv4 or IPv6 address") from exc
    # A VPA is case-insensitive (name@bank); so is how people type it.
    return value.lower() if kind == "vpa" else value


async def add(
    conn: AsyncConnection,
    caller: Principal,
    *,
    list_name: str,
    kind: str,
    value: str,
    reason: str,
    request_id: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """The entry and whether this call made it. The same entry again is answered as it is;
    the value on the other list is a 409 (remove it there first)."""
    value = _normalized(kind, value)
    made = await repo.add_entry(
        conn,
        {
            "id": uuid.uuid4(),
            "list": list_name,
            "kind": kind,
            "value": value,
            "reason": reason,
            "created_by": caller.sub,
        },
    )
    if made is None:
        found = await repo.entry_by_value(conn, kind, value)
        assert found is not None
        if found["list"] != list_name:
            raise FraudListConflict(
                f"this {kind} is on the {found['list']} list; remove it there first"
            )
        return found, False
    await audit.record(
        conn,
        caller,
        action=f"fraud.list.{list_name}.added",
        target_type=f"fraud_{kind}",
        target_id=value,
        details={"entry_id": str(made["id"]), "reason": reason},
        request_id=request_id,
    )
    return made, True


async def remove(
    conn: AsyncConnection, caller: Principal, entry_id: uuid.UUID, *, request_id: str | None = None
) -> None:
    gone = await repo.delete_entry(conn, entry_id)
    if gone is None:
        raise NotFound(f"list entry {entry_id} does not exist")
    await audit.record(
        conn,
        caller,
        action=f"fraud.list.{gone['list']}.removed",
        target_type=f"fraud_{gone['kind']}",
        target_id=gone["value"],
        details={"entry_id": str(entry_id), "reason": gone["reason"]},
        request_id=request_id,
    )


async def entries(
    conn: AsyncConnection, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[dict[str, Any]]:
    return await repo.list_entries(conn, after, limit)


async def on_lists(conn: AsyncConnection, entries: list[tuple[str, str]]) -> dict[str, str]:
    return await repo.listed(conn, [(k, _normalized(k, v)) for k, v in entries])
