"""What a route that needs an active community answers, through the API's own problem
handlers: RFC 9457 documents with stable codes, and Retry-After on the 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from commdesk_billing import problems
from commdesk_billing.config import Settings
from commdesk_billing.modules.communities.deps import Communities
from commdesk_billing.modules.communities.mongo import community_directory
from commdesk_billing.problems import MEDIA_TYPE
from commdesk_billing.stack import free_port
from tests.modules.communities.conftest import Put


def _app(settings: Settings) -> FastAPI:
    """A route as the spends will use the directory: `Communities`, `require_active`."""
    app = FastAPI()
    problems.install(app)

    @app.get("/communities/{community_id}")
    async def read(community_id: str, communities: Communities) -> dict[str, Any]:
        community = await communities.require_active(community_id)
        return {"id": community.id, "name": community.name}

    app.state.communities = community_directory(settings)
    return app


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = _app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
            yield c
    finally:
        await app.state.communities.aclose()


def _problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == MEDIA_TYPE
    body: dict[str, Any] = r.json()
    assert (body["type"], body["status"], body["code"]) == (
        f"urn:commdesk:billing:problem:{code}",
        status,
        code,
    )
    return body


async def test_an_active_community(api: httpx.AsyncClient, put: Put) -> None:
    cid = await put(name="Book Club")
    r = await api.get(f"/communities/{cid}")
    assert (r.status_code, r.json()) == (200, {"id": cid, "name": "Book Club"})


async def test_refusals_are_problems(api: httpx.AsyncClient, put: Put) -> None:
    missing = _problem(await api.get("/communities/nobody-has-this"), 404, "community_not_found")
    assert missing["title"] == "No such community"
    assert missing["community_id"] == "nobody-has-this"
    suspended = await put(status="suspended")
    body = _problem(await api.get(f"/communities/{suspended}"), 409, "community_suspended")
    assert body["detail"] == "the community is suspended: it receives no spends or payouts"
    broken = await put(owner_ids="not-a-list")
    _problem(await api.get(f"/communities/{broken}"), 502, "community_record_invalid")
    # Percent-encoded, as a client would send a hostile id in the path.
    for hostile in ("a%20b", "%24where", "x" * 65, "caf%C3%A9"):
        body = _problem(await api.get(f"/communities/{hostile}"), 422, "invalid_community_id")
        assert "community_id" not in body


async def test_mongodb_unreachable_is_a_503_with_retry_after(settings: Settings) -> None:
    nobody = f"mongodb://127.0.0.1:{free_port()}/"
    cfg = settings.model_copy(update={"mongodb_url": SecretStr(nobody), "mongodb_timeout_s": 0.5})
    app = _app(cfg)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
            r = await c.get("/communities/any-community")
    finally:
        await app.state.communities.aclose()
    body = _problem(r, 503, "community_directory_unavailable")
    assert r.headers["retry-after"] == "5" and body["retry_after_s"] == 5
    assert "connection" not in r.headers  # an answer, not a crash
