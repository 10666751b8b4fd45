"""A member's risk profile: their latest scorings, the events and rules that fired, their
reviews and what was decided — so support can say which rule stopped a member."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.fraud import repository as repo

PROFILE_ROWS = 50


async def profile(conn: AsyncConnection, user_id: uuid.UUID) -> dict[str, Any]:
    assessments = await repo.assessments_of_user(conn, user_id, PROFILE_ROWS)
    events = await repo.events_of_user(conn, user_id, PROFILE_ROWS)
    reviews = await repo.list_reviews(
        conn, status=None, user_id=user_id, after=None, limit=PROFILE_ROWS
    )
    fired: Counter[str] = Counter(rule for a in assessments for rule in a["rules"])
    return {
        "user_id": user_id,
        "assessments": assessments,
        "events": events,
        "reviews": reviews,
        "rules_fired": dict(fired),
        "blocked": sum(1 for a in assessments if a["action"] == "block"),
        "highest_score": max((a["score"] for a in assessments), default=0),
        "listed": await repo.listed(conn, [("user", str(user_id))]),
    }
