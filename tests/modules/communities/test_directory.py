"""The community directory against a real MongoDB-wire server: what it reads, what it
refuses, and what its cache saves (counted in the `find` commands the client sends)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bson import ObjectId

from commdesk_billing.modules.communities import directory as directory_module
from commdesk_billing.modules.communities.directory import (
    PROJECTION,
    Community,
    CommunityNotFound,
    CommunityRecordInvalid,
    CommunityStatus,
    CommunitySuspended,
    InvalidCommunityId,
)
from tests.modules.communities.conftest import Clock, DirectoryFactory, Finds, Put


async def test_an_active_community_is_read_with_its_owners(
    put: Put, make_directory: DirectoryFactory, finds: Finds
) -> None:
    cid = await put(name="Chess Club", owner_ids=["u-1", "u-2"], members=["m"] * 3, plan="x")
    directory = make_directory()
    community = await directory.get(cid)
    assert community == Community(cid, "Chess Club", ("u-1", "u-2"), CommunityStatus.active)
    assert community.is_owner("u-2") and not community.is_owner("u-3")
    assert await directory.require_active(cid) == community
    # One query, by id, for the four fields only: never the rest of CommDesk's document.
    assert finds.count == 1
    assert finds.last["filter"] == {"_id": cid}
    assert finds.last["projection"] == PROJECTION


async def test_a_community_mongodb_does_not_know(make_directory: DirectoryFactory) -> None:
    directory = make_directory()
    assert await directory.get("no-such-community") is None
    with pytest.raises(CommunityNotFound) as refused:
        await directory.require_active("no-such-community")
    assert (refused.value.status, refused.value.code) == (404, "community_not_found")
    assert refused.value.extra == {"community_id": "no-such-community"}


async def test_a_suspended_community_is_read_but_receives_nothing(
    put: Put, make_directory: DirectoryFactory
) -> None:
    cid = await put(status="suspended")
    directory = make_directory()
    community = await directory.get(cid)
    assert community is not None and community.status is CommunityStatus.suspended
    with pytest.raises(CommunitySuspended) as refused:
        await directory.require_active(cid)
    assert (refused.value.status, refused.value.code) == (409, "community_suspended")


async def test_an_objectid_is_found_by_its_hex(
    put: Put, make_directory: DirectoryFactory, finds: Finds
) -> None:
    oid = ObjectId()
    await put(oid, name="Old Style")
    directory = make_directory()
    for asked in (str(oid), str(oid).upper()):
        community = await directory.get(asked)
        assert community is not None
        assert (community.id, community.name) == (str(oid), "Old Style")
    assert finds.last["filter"] == {"_id": {"$in": [str(oid).upper(), oid]}}


async def test_a_string_id_wins_over_an_objectid_of_the_same_hex(
    put: Put, make_directory: DirectoryFactory
) -> None:
    oid = ObjectId()
    await put(oid, name="By ObjectId")
    await put(str(oid), name="By string")
    community = await make_directory().get(str(oid))
    assert community is not None and community.name == "By string"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def error(self, event: str, **kw: Any) -> None:
        self.events.append(("error", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.events.append(("warning", event, kw))


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"name": None}, "name missing or not text"),
        ({"name": 42}, "name missing or not text"),
        ({"name": "   "}, "name missing or not text"),
        ({"name": "x" * 201}, "name too long or not printable"),
        ({"name": "line\nbreak"}, "name too long or not printable"),
        ({"owner_ids": None}, "owner_ids missing, not a list, or too long"),
        ({"owner_ids": "owner-1"}, "owner_ids missing, not a list, or too long"),
        ({"owner_ids": ["o"] * 1001}, "owner_ids missing, not a list, or too long"),
        ({"owner_ids": ["owner-1", 7]}, "owner_ids holds something other than ids"),
        ({"owner_ids": [""]}, "owner_ids holds something other than ids"),
        ({"owner_ids": [{"$ne": None}]}, "owner_ids holds something other than ids"),
        ({"status": None}, "status missing or unknown"),
        ({"status": "deleted"}, "status missing or unknown"),
        ({"status": "ACTIVE"}, "status missing or unknown"),
    ],
)
async def test_a_document_of_another_shape_is_never_used(
    put: Put,
    make_directory: DirectoryFactory,
    monkeypatch: pytest.MonkeyPatch,
    fields: dict[str, Any],
    problem: str,
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(directory_module, "log", recorder)
    cid = await put(**{"name": "Secret Society", "owner_ids": ["owner-1"], **fields})
    directory = make_directory()
    with pytest.raises(CommunityRecordInvalid) as refused:
        await directory.get(cid)
    assert (refused.value.status, refused.value.code) == (502, "community_record_invalid")
    with pytest.raises(CommunityRecordInvalid):
        await directory.require_active(cid)
    # Logged once (the second answer came from the cache), naming the id and what is
    # wrong: nothing of the document's contents.
    assert recorder.events == [
        ("error", "communities.document.invalid", {"community_id": cid, "problem": problem})
    ]


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "x" * 65,
        "../communities",
        "a b",
        "a.b",
        "a/b",
        '{"$ne": null}',
        "$where",
        "name\x00",
        "café",
        "%24ne",
        "a\nb",
    ],
)
async def test_an_id_no_community_can_have_is_refused_before_any_query(
    make_directory: DirectoryFactory, finds: Finds, hostile: str
) -> None:
    directory = make_directory()
    with pytest.raises(InvalidCommunityId) as refused:
        await directory.get(hostile)
    assert (refused.value.status, refused.value.code) == (422, "invalid_community_id")
    # A fixed sentence: the id is never echoed back.
    assert (
        refused.value.detail == "a community id is 1-64 characters of letters, digits, '-' and '_'"
    )
    with pytest.raises(InvalidCommunityId):
        await directory.require_active(hostile)
    assert finds.count == 0


async def test_a_cached_read_sends_no_query_until_it_expires(
    put: Put,
    collection: Any,
    make_directory: DirectoryFactory,
    finds: Finds,
    clock: Clock,
) -> None:
    cid = await put(name="Before")
    directory = make_directory(cache_s=30)
    assert (await directory.require_active(cid)).name == "Before"
    await collection.update_one({"_id": cid}, {"$set": {"name": "After"}})
    clock.advance(29.9)
    assert (await directory.require_active(cid)).name == "Before"  # within the TTL
    assert finds.count == 1
    clock.advance(0.2)
    assert (await directory.require_active(cid)).name == "After"
    assert finds.count == 2


async def test_a_miss_is_cached_for_a_few_seconds_only(
    put: Put, make_directory: DirectoryFactory, finds: Finds, clock: Clock
) -> None:
    directory = make_directory(cache_s=30)
    assert await directory.get("created-later") is None
    await put("created-later")
    clock.advance(4.9)
    assert await directory.get("created-later") is None
    assert finds.count == 1
    clock.advance(0.2)  # past the 5 s of a miss, long before the 30 s of a hit
    assert await directory.get("created-later") is not None
    assert finds.count == 2


async def test_no_cache_at_zero(put: Put, make_directory: DirectoryFactory, finds: Finds) -> None:
    cid = await put()
    directory = make_directory(cache_s=0)
    for _ in range(3):
        assert await directory.get(cid) is not None
        assert await directory.get("absent") is None
    assert finds.count == 6


async def test_the_cache_keeps_the_most_recently_used(
    put: Put, make_directory: DirectoryFactory, finds: Finds
) -> None:
    a, b, c = await put(), await put(), await put()
    directory = make_directory(max_entries=2)
    await directory.get(a)
    await directory.get(b)
    await directory.get(a)  # a is now the most recent; b the least
    await directory.get(c)  # evicts b
    assert finds.count == 3
    await directory.get(a)
    await directory.get(c)
    assert finds.count == 3
    await directory.get(b)
    assert finds.count == 4


async def test_concurrent_readers_of_one_expired_entry_send_one_query(
    put: Put, make_directory: DirectoryFactory, finds: Finds, clock: Clock
) -> None:
    cid = await put()
    directory = make_directory()
    await directory.get(cid)
    clock.advance(31)
    found = await asyncio.gather(*(directory.require_active(cid) for _ in range(25)))
    assert {c.id for c in found} == {cid}
    assert finds.count == 2
