"""CommDesk's MongoDB: the client billing reads it with, and the one write billing ever
makes to it (seeding a demo community in development, never production's collection)."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import unquote

from pymongo import AsyncMongoClient

from commdesk_billing.config import Settings, mongodb_hosts
from commdesk_billing.modules.communities.directory import (
    COLLECTION,
    CommunityDirectory,
    CommunityStatus,
    check_community_id,
    record_problem,
)

# Reads are few and cached: a handful of connections per process is plenty.
MAX_POOL_SIZE = 10


def mongo_client(settings: Settings) -> AsyncMongoClient[dict[str, Any]]:
    """A client for BILLING_MONGODB_URL, taken as it is (an Atlas `mongodb+srv://` URL too).
    It connects on first use, never here: the API starts while MongoDB is down. Our timeouts
    take precedence over any in the URL, so BILLING_MONGODB_TIMEOUT_S is what holds."""
    timeout_ms = max(1, int(settings.mongodb_timeout_s * 1000))
    return AsyncMongoClient(
        settings.mongodb_url.get_secret_value(),
        appname="commdesk-billing",
        # timeoutMS bounds a whole operation (server selection, checkout, the round trip,
        # its one retry); the others bound each step on their own.
        timeoutMS=timeout_ms,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
        maxPoolSize=MAX_POOL_SIZE,
        tz_aware=True,
    )


def community_directory(settings: Settings) -> CommunityDirectory:
    """The process's directory; the caller owns it (`aclose`)."""
    return CommunityDirectory(
        mongo_client(settings),
        settings.mongodb_database,
        cache_s=settings.community_cache_s,
        timeout_s=settings.mongodb_timeout_s,
        where=servers(settings.mongodb_url.get_secret_value()),
    )


def servers(url: str) -> str:
    """`scheme://host[,host…]`: where the URL leads, without its credentials or options."""
    return f"{url.split('://', 1)[0]}://{','.join(mongodb_hosts(url))}"


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:27017
        return host[1 : host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(url: str) -> bool:
    """Does every server of the URL live on this machine? A `+srv` URL names a DNS domain
    (Atlas), so it never does; a Unix socket path does."""
    if url.startswith("mongodb+srv://"):
        return False
    hosts = mongodb_hosts(url)
    if not hosts:
        return False
    for host in hosts:
        name = unquote(_host_name(host))
        if name.startswith("/") and name.endswith(".sock"):
            continue
        if name.lower() == "localhost":
            continue
        try:
            if not ipaddress.ip_address(name).is_loopback:
                return False
        except ValueError:
            return False
    return True


async def seed_community(
    settings: Settings, community_id: str, *, name: str, owner_ids: list[str]
) -> bool:
    """Upsert an active community document; True if it was created. Development only: the
    CLI refuses any MongoDB off this machine unless told otherwise. Fields other than the
    four billing reads are left as they are."""
    check_community_id(community_id)
    fields = {"name": name, "owner_ids": owner_ids, "status": CommunityStatus.active.value}
    if (problem := record_problem(fields)) is not None:
        raise ValueError(f"the directory would refuse this community: {problem}")
    client = mongo_client(settings)
    try:
        result = await client[settings.mongodb_database][COLLECTION].update_one(
            {"_id": community_id}, {"$set": fields}, upsert=True
        )
    finally:
        await client.close()
    return result.upserted_id is not None
