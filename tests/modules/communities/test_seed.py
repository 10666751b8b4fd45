"""`commdesk-billing communities seed-demo`: the one write billing makes to CommDesk's
MongoDB, and only to one on this machine. Also: what the URL helpers make of Atlas URLs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest
from pydantic import SecretStr

from commdesk_billing.config import Settings
from commdesk_billing.modules.communities.directory import Community, CommunityStatus
from commdesk_billing.modules.communities.mongo import community_directory, is_loopback, servers
from tests.harness.mongo import MongoTarget

CLI = [sys.executable, "-m", "commdesk_billing.cli"]
ATLAS = "mongodb+srv://billing:s3cr3t-pw@cluster0.ab1cd.mongodb.net/commdesk?retryWrites=true"


def _seed(url: str, database: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "communities", "seed-demo", *args],
        env={
            **os.environ,
            "BILLING_MONGODB_URL": url,
            "BILLING_MONGODB_DATABASE": database,
            "BILLING_MONGODB_TIMEOUT_S": "2",
            "BILLING_LOG_JSON": "false",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("mongodb://127.0.0.1:27017/", True),
        ("mongodb://localhost/commdesk", True),
        ("mongodb://u:p@127.0.0.2:1,[::1]:2/?replicaSet=rs0", True),
        ("mongodb://%2Ftmp%2Fmongodb-27017.sock", True),
        ("mongodb://10.0.0.5:27017/", False),
        ("mongodb://127.0.0.1:27017,db.example.com:27017/", False),
        ("mongodb://localhost.example.com/", False),
        (ATLAS, False),
    ],
)
def test_what_counts_as_this_machine(url: str, local: bool) -> None:
    assert is_loopback(url) is local


def test_servers_never_carry_credentials_or_options() -> None:
    assert servers(ATLAS) == "mongodb+srv://cluster0.ab1cd.mongodb.net"
    assert servers("mongodb://u:p@a:1,b:2/db?authSource=admin") == "mongodb://a:1,b:2"
    # Settings keep the URL secret, so it never appears in a repr or a log of them.
    assert "s3cr3t" not in repr(Settings(mongodb_url=SecretStr(ATLAS)))


@pytest.mark.parametrize(
    "url", [ATLAS, "mongodb://billing:s3cr3t-pw@db.example.com:27017/"], ids=["atlas", "remote"]
)
def test_seeding_refuses_a_mongodb_off_this_machine(url: str) -> None:
    done = _seed(url, "commdesk", "--owner", "u-1")
    assert done.returncode == 3
    assert "is not on this machine: billing only reads CommDesk's communities" in done.stderr
    assert "s3cr3t" not in done.stdout + done.stderr


def test_seeding_is_refused_in_production(mongodb: MongoTarget) -> None:
    done = _seed(
        mongodb.url,
        mongodb.database,
        "--owner",
        "u-1",
        "--force",
        BILLING_ENV="production",
        BILLING_JWT_SECRET="x" * 40,
        BILLING_SELLER_GSTIN="29ABCDE1234F1Z5",
        BILLING_CASHFREE_CLIENT_SECRET="real-secret",
        BILLING_CASHFREE_BASE_URL="https://api.cashfree.com/pg",
        BILLING_PUBLIC_BASE_URL="https://billing.example.com",
        BILLING_JWT_JWKS_URL="https://id.example.com/.well-known/jwks.json",
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "billing never writes CommDesk's communities in production" in done.stderr


async def test_seeding_a_demo_community_the_directory_then_reads(
    settings: Settings, mongodb: MongoTarget
) -> None:
    cid = f"demo-{uuid.uuid4().hex[:8]}"
    args = ("--id", cid, "--owner", "alice", "--owner", "bob", "--owner", "alice")
    first = await asyncio.to_thread(_seed, mongodb.url, mongodb.database, *args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (
        f"community {cid} created in {mongodb.database}.communities at "
        f"{servers(mongodb.url)}: active, owners alice, bob"
    )
    again = await asyncio.to_thread(
        _seed, mongodb.url, mongodb.database, *args[:2], "--name", "Renamed", "--owner", "carol"
    )
    assert again.returncode == 0 and f"community {cid} updated" in again.stdout
    directory = community_directory(settings)
    try:
        assert await directory.require_active(cid) == Community(
            cid, "Renamed", ("carol",), CommunityStatus.active
        )
    finally:
        await directory.aclose()


def test_seeding_refuses_what_the_directory_would_refuse(mongodb: MongoTarget) -> None:
    bad_id = _seed(mongodb.url, mongodb.database, "--id", "no spaces", "--owner", "u")
    assert bad_id.returncode == 3
    assert "a community id is 1-64 characters" in bad_id.stderr
    bad_name = _seed(mongodb.url, mongodb.database, "--name", "x" * 201, "--owner", "u")
    assert bad_name.returncode == 3
    assert "the directory would refuse this community: name too long" in bad_name.stderr
