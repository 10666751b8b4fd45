"""Document storage: both backends against one contract, then each backend's own risks.

The Bunny backend talks real HTTP to the in-memory stand-in served by uvicorn on a free
loopback port (tests/servers.py); nothing is mocked at the httpx level.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from commdesk_billing.config import Settings
from commdesk_billing.storage import (
    MAX_KEY_LENGTH,
    BunnyDocumentStore,
    DocumentStore,
    LocalDocumentStore,
    ObjectConflict,
    ObjectNotFound,
    StorageAuthError,
    StorageError,
    StorageUnavailable,
    StoredObject,
    document_store,
    validate_key,
)
from commdesk_billing.storage import bunny as bunny_module
from commdesk_billing.storage.standin import BunnyStandin, create_bunny_standin, standin_of
from tests.harness.servers import serving

ZONE = "commdesk-invoices"
ACCESS_KEY = "standin-access-key-7d4f0c2e-secret"
KEY = "invoices/2026-27/CDB-2026-27-000001.pdf"
PDF = b"%PDF-1.7\n% an invoice\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
PDF_TYPE = "application/pdf"

INVALID_KEYS = [
    "../x",
    "invoices/../../x",
    "/abs",
    "/etc/passwd",
    "a//b",
    "a/./b",
    "a/..",
    ".",
    "..",
    "",
    "a/",
    "x" * (MAX_KEY_LENGTH + 1),
    "a b.pdf",
    "a\\b.pdf",
    "a\x00b",
    "invoice?.pdf",
    "a%2Fb",
    "fa\u00e7ture.pdf",
    "a.pdf\n",
    "~/x",
]


def bunny_store(url: str, access_key: str = ACCESS_KEY, **kw: Any) -> BunnyDocumentStore:
    # Short backoff and timeout: the retry tests stay fast while exercising the real paths.
    options: dict[str, Any] = {"timeout_s": 2.0, "backoff_s": 0.01, "max_backoff_s": 0.05}
    return BunnyDocumentStore(url, ZONE, access_key, **(options | kw))


def tree(directory: Path) -> list[str]:
    """Every path under `directory` (hidden files included), for before/after comparisons."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@dataclass
class Backend:
    name: str
    store: DocumentStore
    # A fingerprint of all I/O the backend could have done (files on disk, HTTP requests).
    io_snapshot: Callable[[], object]


@pytest.fixture
async def standin_server() -> AsyncIterator[tuple[str, BunnyStandin]]:
    app = create_bunny_standin(ACCESS_KEY, ZONE)
    async with serving(app) as url:
        yield url, standin_of(app)


@pytest.fixture(params=["local", "bunny"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "local":
        local = LocalDocumentStore(tmp_path / "documents")
        # The whole tmp_path, not just the root: a traversal would write beside the root.
        yield Backend("local", local, lambda: tree(tmp_path))
        await local.aclose()
        return
    app = create_bunny_standin(ACCESS_KEY, ZONE)
    standin = standin_of(app)
    async with serving(app) as url:
        store = bunny_store(url)
        try:
            yield Backend("bunny", store, lambda: len(standin.requests))
        finally:
            await store.aclose()


# --- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        KEY,
        "a",
        "invoices/2026-27/credit-notes/CDC-2026-27-000042.pdf",
        "...",  # only '.' and '..' are path tricks; this is an ordinary (odd) name
        ".hidden_file-1.PDF",
        "x" * MAX_KEY_LENGTH,
        ("abc/" * 128)[:-1],  # 128 segments, 511 characters
    ],
)
def test_valid_keys_are_accepted(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_raise_value_error(key: str) -> None:
    with pytest.raises(ValueError):
        validate_key(key)


# --- the contract, for both backends ------------------------------------------------------


async def test_backend_satisfies_the_protocol(backend: Backend) -> None:
    assert isinstance(backend.store, DocumentStore)


@pytest.mark.parametrize(
    "data", [PDF, b"", os.urandom(300_000)], ids=["pdf", "empty", "300k-random"]
)
async def test_put_get_round_trip(backend: Backend, data: bytes) -> None:
    stored = await backend.store.put(KEY, data, PDF_TYPE)
    assert stored == StoredObject(KEY, len(data), hashlib.sha256(data).hexdigest())
    assert await backend.store.get(KEY) == data


async def test_keys_are_independent(backend: Backend) -> None:
    keys = [KEY, "invoices/2026-27/CDB-2026-27-000002.pdf", "invoices/2027-28/x.pdf", "top"]
    for i, key in enumerate(keys):
        await backend.store.put(key, PDF + bytes([i]), PDF_TYPE)
    for i, key in enumerate(keys):
        assert await backend.store.get(key) == PDF + bytes([i])


async def test_identical_reput_is_idempotent(backend: Backend) -> None:
    first = await backend.store.put(KEY, PDF, PDF_TYPE)
    again = await backend.store.put(KEY, PDF, PDF_TYPE)
    assert again == first
    assert await backend.store.get(KEY) == PDF


async def test_conflicting_reput_raises_and_keeps_the_original(backend: Backend) -> None:
    await backend.store.put(KEY, PDF, PDF_TYPE)
    with pytest.raises(ObjectConflict) as info:
        await backend.store.put(KEY, PDF + b"tampered", PDF_TYPE)
    assert info.value.key == KEY
    assert await backend.store.get(KEY) == PDF
    # An empty body is "different bytes" too, not "nothing to compare".
    with pytest.raises(ObjectConflict):
        await backend.store.put(KEY, b"", PDF_TYPE)
    assert await backend.store.get(KEY) == PDF


async def test_get_missing_raises_object_not_found(backend: Backend) -> None:
    with pytest.raises(ObjectNotFound):
        await backend.store.get(KEY)
    await backend.store.put(KEY, PDF, PDF_TYPE)
    with pytest.raises(ObjectNotFound):
        await backend.store.get("invoices/2026-27/CDB-2026-27-999999.pdf")


async def test_delete_is_idempotent(backend: Backend) -> None:
    await backend.store.delete("never/stored.pdf")
    await backend.store.put(KEY, PDF, PDF_TYPE)
    await backend.store.delete(KEY)
    with pytest.raises(ObjectNotFound):
        await backend.store.get(KEY)
    await backend.store.delete(KEY)
    # Deletion frees the key: writing it again (even with other bytes) is allowed.
    await backend.store.put(KEY, b"replacement", PDF_TYPE)
    assert await backend.store.get(KEY) == b"replacement"


@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_invalid_keys_are_refused_before_any_io(backend: Backend, key: str) -> None:
    before = backend.io_snapshot()
    with pytest.raises(ValueError):
        await backend.store.put(key, PDF, PDF_TYPE)
    with pytest.raises(ValueError):
        await backend.store.get(key)
    with pytest.raises(ValueError):
        await backend.store.delete(key)
    assert backend.io_snapshot() == before


async def test_health_ok(backend: Backend) -> None:
    await backend.store.health()
    await backend.store.put(KEY, PDF, PDF_TYPE)
    await backend.store.health()


# --- Bunny: what the client does on the wire -----------------------------------------------


async def test_bunny_put_sends_checksum_and_skips_identical_upload(
    standin_server: tuple[str, BunnyStandin],
) -> None:
    url, standin = standin_server
    async with bunny_store(url) as store:
        await store.put(KEY, PDF, PDF_TYPE)
        await store.put(KEY, PDF, PDF_TYPE)
    puts = [r for r in standin.requests if r.method == "PUT"]
    assert len(puts) == 1, "an identical re-put must not upload again"
    assert puts[0].path == f"/{ZONE}/{KEY}"
    assert puts[0].checksum == hashlib.sha256(PDF).hexdigest().upper()
    assert standin.objects[KEY].data == PDF


async def test_bunny_wrong_access_key_raises_auth_error_without_retry(
    standin_server: tuple[str, BunnyStandin],
) -> None:
    url, standin = standin_server
    standin.objects.clear()
    async with bunny_store(url, access_key="not-the-key") as store:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.put(KEY, PDF, PDF_TYPE),
            lambda: store.get(KEY),
            lambda: store.delete(KEY),
        ]
        for call in calls:
            seen = len(standin.requests)
            with pytest.raises(StorageAuthError) as info:
                await call()
            assert info.value.status == 401
            assert len(standin.requests) == seen + 1, "401 must not be retried"
        with pytest.raises(StorageUnavailable) as health:
            await store.health()
        assert isinstance(health.value.__cause__, StorageAuthError)
    assert standin.objects == {}


async def test_bunny_retries_503_transparently(
    standin_server: tuple[str, BunnyStandin],
) -> None:
    url, standin = standin_server
    async with bunny_store(url) as store:
        standin.fail_next(2, 503, method="PUT")
        await store.put(KEY, PDF, PDF_TYPE)
        assert sum(r.method == "PUT" for r in standin.requests) == 3
        standin.fail_next(2, 503, method="GET")
        assert await store.get(KEY) == PDF
        standin.fail_next(2, 502, method="DELETE")
        await store.delete(KEY)
        assert KEY not in standin.objects


async def test_bunny_503_forever_gives_storage_unavailable_after_bounded_retries(
    standin_server: tuple[str, BunnyStandin],
) -> None:
    url, standin = standin_server
    async with bunny_store(url, max_retries=3) as store:
        standin.fail_next(1000, 503)
        with pytest.raises(StorageUnavailable) as info:
            await store.put(KEY, PDF, PDF_TYPE)
        assert info.value.status == 503
        # The existence check failed: 1 attempt + 3 retries, and nothing was uploaded.
        assert [r.method for r in standin.requests] == ["GET"] * 4
        with pytest.raises(StorageUnavailable):
            await store.get(KEY)
        with pytest.raises(StorageUnavailable):
            await store.health()
    assert standin.objects == {}


async def test_bunny_timeouts_are_retried_then_reported(
    standin_server: tuple[str, BunnyStandin],
) -> None:
    url, standin = standin_server
    async with bunny_store(url, timeout_s=0.3, max_retries=2) as store:
        await store.put(KEY, PDF, PDF_TYPE)
        standin.stall_next(1, 1.0, method="GET")
        assert await store.get(KEY) == PDF
        standin.stall_next(1000, 1.0, method="GET")
        with pytest.raises(StorageUnavailable, match="timed out"):
            await store.get(KEY)
        standin.clear_faults()


async def test_bunny_4xx_is_not_retried(standin_server: tuple[str, BunnyStandin]) -> None:
    url, standin = standin_server
    async with bunny_store(url) as store:
        standin.fail_next(1, 400, method="PUT")
        with pytest.raises(StorageError) as info:
            await store.put(KEY, PDF, PDF_TYPE)
        assert type(info.value) is StorageError
        assert info.value.status == 400
        assert sum(r.method == "PUT" for r in standin.requests) == 1
        assert KEY not in standin.objects
        standin.fail_next(1, 429, method="GET")
        with pytest.raises(StorageUnavailable):
            await store.get(KEY)
        assert sum(r.method == "GET" for r in standin.requests) == 2


async def test_bunny_health_fails_once_the_server_is_gone() -> None:
    app = create_bunny_standin(ACCESS_KEY, ZONE)
    async with serving(app) as url:
        store = bunny_store(url, max_retries=1)
        await store.health()
    try:
        with pytest.raises(StorageUnavailable, match="could not reach"):
            await store.health()
        with pytest.raises(StorageUnavailable):
            await store.put(KEY, PDF, PDF_TYPE)
    finally:
        await store.aclose()


async def test_bunny_health_fails_for_an_unknown_zone(
    standin_server: tuple[str, BunnyStandin],
) -> None:
    url, _ = standin_server
    async with BunnyDocumentStore(url, "other-zone", ACCESS_KEY, 2.0) as store:
        with pytest.raises(StorageUnavailable) as info:
            await store.health()
        assert info.value.status == 404


async def test_bunny_never_reveals_the_access_key(
    standin_server: tuple[str, BunnyStandin],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, standin = standin_server
    events: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def warning(self, event: str, **kw: Any) -> None:
            events.append((event, kw))

    # The module logger is replaced rather than captured: structlog may already be configured
    # with cached loggers by another test, which would bypass capture_logs.
    monkeypatch.setattr(bunny_module, "log", Recorder())
    caplog.set_level(logging.DEBUG)
    store = bunny_store(url)
    errors: list[BaseException] = []
    standin.fail_next(2, 503)
    await store.put(KEY, PDF, PDF_TYPE)
    standin.fail_next(1000, 503)
    with pytest.raises(StorageUnavailable) as unavailable:
        await store.get(KEY)
    errors.append(unavailable.value)
    standin.clear_faults()
    await store.aclose()
    async with bunny_store(url, access_key=ACCESS_KEY + "-wrong") as bad:
        with pytest.raises(StorageAuthError) as denied:
            await bad.get(KEY)
        errors.append(denied.value)
        assert ACCESS_KEY not in repr(bad)
    assert events, "the retries should have been logged"
    everything = (
        repr(events) + caplog.text + repr(store) + "".join(repr(e) + str(e) for e in errors)
    )
    assert ACCESS_KEY not in everything


async def test_bunny_leaves_a_shared_client_open(
    standin_server: tuple[str, BunnyStandin],
) -> None:
    url, _ = standin_server
    async with httpx.AsyncClient() as shared:
        store = bunny_store(url, client=shared)
        await store.put(KEY, PDF, PDF_TYPE)
        await store.aclose()
        assert not shared.is_closed
        # The store's timeout applies per request, even on a client it does not own.
        assert (
            await shared.get(f"{url}/{ZONE}/{KEY}", headers={"AccessKey": ACCESS_KEY})
        ).content == PDF


def test_bunny_constructor_refuses_bad_settings() -> None:
    with pytest.raises(ValueError):
        BunnyDocumentStore("storage.bunnycdn.com", ZONE, ACCESS_KEY, 1.0)
    with pytest.raises(ValueError):
        BunnyDocumentStore("https://storage.bunnycdn.com", "", ACCESS_KEY, 1.0)
    with pytest.raises(ValueError):
        BunnyDocumentStore("https://storage.bunnycdn.com", "a/b", ACCESS_KEY, 1.0)
    with pytest.raises(ValueError):
        BunnyDocumentStore("https://storage.bunnycdn.com", ZONE, "", 1.0)


# --- the stand-in speaks Bunny's API (raw HTTP) ---------------------------------------------


async def test_standin_verifies_the_checksum(standin_server: tuple[str, BunnyStandin]) -> None:
    url, standin = standin_server
    target = f"{url}/{ZONE}/{KEY}"
    headers = {"AccessKey": ACCESS_KEY, "Content-Type": "application/octet-stream"}
    async with httpx.AsyncClient() as http:
        wrong = await http.put(target, content=PDF, headers=headers | {"Checksum": "AB" * 32})
        assert wrong.status_code == 400
        assert wrong.json()["HttpCode"] == 400
        assert (await http.get(target, headers=headers)).status_code == 404
        # A checksum of other bytes is refused just the same.
        other = hashlib.sha256(PDF + b"x").hexdigest().upper()
        assert (
            await http.put(target, content=PDF, headers=headers | {"Checksum": other})
        ).status_code == 400
        right = hashlib.sha256(PDF).hexdigest().upper()
        ok = await http.put(target, content=PDF, headers=headers | {"Checksum": right})
        assert ok.status_code == 201
        assert ok.json() == {"HttpCode": 201, "Message": "File uploaded."}
        assert (await http.get(target, headers=headers)).content == PDF
    assert standin.objects[KEY].checksum == right


async def test_standin_auth_zone_and_missing_objects(
    standin_server: tuple[str, BunnyStandin],
) -> None:
    url, _ = standin_server
    auth = {"AccessKey": ACCESS_KEY}
    async with httpx.AsyncClient() as http:
        for headers in ({}, {"AccessKey": "wrong"}):
            denied = await http.get(f"{url}/{ZONE}/", headers=headers)
            assert denied.status_code == 401
            assert denied.json() == {"HttpCode": 401, "Message": "Unauthorized"}
            put = await http.put(f"{url}/{ZONE}/{KEY}", content=PDF, headers=headers)
            assert put.status_code == 401
        assert (await http.get(f"{url}/elsewhere/", headers=auth)).status_code == 404
        assert (
            await http.put(f"{url}/elsewhere/x.pdf", content=b"x", headers=auth)
        ).status_code == 404
        missing = await http.get(f"{url}/{ZONE}/{KEY}", headers=auth)
        assert missing.status_code == 404
        assert missing.json()["HttpCode"] == 404
        assert (await http.delete(f"{url}/{ZONE}/{KEY}", headers=auth)).status_code == 404


async def test_standin_overwrites_like_bunny(standin_server: tuple[str, BunnyStandin]) -> None:
    """Bunny's PUT replaces silently: why the client must check before it uploads."""
    url, _ = standin_server
    target = f"{url}/{ZONE}/{KEY}"
    auth = {"AccessKey": ACCESS_KEY}
    async with httpx.AsyncClient() as http:
        assert (await http.put(target, content=b"one", headers=auth)).status_code == 201
        assert (await http.put(target, content=b"two", headers=auth)).status_code == 201
        assert (await http.get(target, headers=auth)).content == b"two"
        deleted = await http.delete(target, headers=auth)
        assert deleted.status_code == 200
        assert deleted.json()["HttpCode"] == 200


async def test_standin_directory_listings(standin_server: tuple[str, BunnyStandin]) -> None:
    url, _ = standin_server
    auth = {"AccessKey": ACCESS_KEY}
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/{ZONE}/", headers=auth)).json() == []
        await http.put(f"{url}/{ZONE}/{KEY}", content=PDF, headers=auth)
        await http.put(f"{url}/{ZONE}/readme.txt", content=b"hi", headers=auth)
        root = (await http.get(f"{url}/{ZONE}/", headers=auth)).json()
        sub = (await http.get(f"{url}/{ZONE}/invoices/2026-27/", headers=auth)).json()
        empty = (await http.get(f"{url}/{ZONE}/nothing/here/", headers=auth)).json()
    assert [(o["ObjectName"], o["IsDirectory"]) for o in root] == [
        ("invoices", True),
        ("readme.txt", False),
    ]
    assert root[1]["Length"] == 2
    assert root[1]["Checksum"] == hashlib.sha256(b"hi").hexdigest().upper()
    (entry,) = sub
    assert entry["ObjectName"] == "CDB-2026-27-000001.pdf"
    assert entry["Path"] == f"/{ZONE}/invoices/2026-27/"
    assert entry["StorageZoneName"] == ZONE
    assert entry["Length"] == len(PDF)
    assert entry["IsDirectory"] is False
    assert entry["Checksum"] == hashlib.sha256(PDF).hexdigest().upper()
    for field in ("Guid", "DateCreated", "LastChanged", "UserId", "StorageZoneId"):
        assert entry[field]
    assert empty == []


# --- local: what the disk must never see ----------------------------------------------------


async def test_local_leaves_no_temporary_files(tmp_path: Path) -> None:
    root = tmp_path / "documents"
    store = LocalDocumentStore(root)
    await store.put(KEY, PDF, PDF_TYPE)
    await store.put(KEY, PDF, PDF_TYPE)
    with pytest.raises(ObjectConflict):
        await store.put(KEY, PDF + b"x", PDF_TYPE)
    await store.put("invoices/2026-27/CDB-2026-27-000002.pdf", b"two", PDF_TYPE)
    await store.health()
    assert tree(root) == [
        "invoices",
        "invoices/2026-27",
        "invoices/2026-27/CDB-2026-27-000001.pdf",
        "invoices/2026-27/CDB-2026-27-000002.pdf",
    ]
    # The temporary name was a second link to the object; it is gone.
    assert (root / KEY).stat().st_nlink == 1


async def test_local_traversal_never_writes_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "documents"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.pdf").write_bytes(b"not yours")
    root.mkdir()
    # Symlinks planted inside the root (by accident or by an attacker) must not be followed.
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "link.pdf").symlink_to(outside / "secret.pdf")
    (root / "self").symlink_to(root, target_is_directory=True)
    store = LocalDocumentStore(root)
    for key in ("escape/x.pdf", "escape/secret.pdf", "link.pdf", "self", "../outside/x.pdf"):
        with pytest.raises(ValueError):
            await store.put(key, PDF, PDF_TYPE)
        with pytest.raises(ValueError):
            await store.get(key)
        with pytest.raises(ValueError):
            await store.delete(key)
    assert tree(outside) == ["secret.pdf"]
    assert (outside / "secret.pdf").read_bytes() == b"not yours"
    assert [p for p in tree(tmp_path) if "/" not in p] == ["documents", "outside"]


async def test_local_concurrent_conflicting_puts_have_one_winner(tmp_path: Path) -> None:
    store = LocalDocumentStore(tmp_path / "documents")
    bodies = [PDF + str(i).encode() for i in range(16)]
    results = await asyncio.gather(
        *(store.put(KEY, body, PDF_TYPE) for body in bodies), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, StoredObject)]
    assert len(winners) == 1
    assert all(isinstance(r, ObjectConflict) for r in results if r is not winners[0])
    assert hashlib.sha256(await store.get(KEY)).hexdigest() == winners[0].sha256
    same = await asyncio.gather(*(store.put("same.pdf", PDF, PDF_TYPE) for _ in range(16)))
    assert len(set(same)) == 1
    assert not [p for p in (tmp_path / "documents").rglob("*") if p.name.endswith(".tmp")]


async def test_local_without_hard_links_falls_back_to_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_: Any, **__: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    root = tmp_path / "documents"
    store = LocalDocumentStore(root)
    await store.put(KEY, PDF, PDF_TYPE)
    await store.put(KEY, PDF, PDF_TYPE)
    with pytest.raises(ObjectConflict):
        await store.put(KEY, b"other", PDF_TYPE)
    assert await store.get(KEY) == PDF
    assert tree(root) == ["invoices", "invoices/2026-27", KEY]


async def test_local_keys_that_collide_with_directories(tmp_path: Path) -> None:
    store = LocalDocumentStore(tmp_path / "documents")
    await store.put(KEY, PDF, PDF_TYPE)
    # "invoices/2026-27" is a directory, not an object.
    with pytest.raises(ObjectNotFound):
        await store.get("invoices/2026-27")
    with pytest.raises(ObjectConflict):
        await store.put("invoices/2026-27", PDF, PDF_TYPE)
    await store.delete("invoices/2026-27")
    assert await store.get(KEY) == PDF
    # A key cannot run through an existing object either.
    with pytest.raises(ObjectConflict):
        await store.put(KEY + "/inner.pdf", PDF, PDF_TYPE)
    with pytest.raises(ObjectNotFound):
        await store.get(KEY + "/inner.pdf")


async def test_local_health_fails_when_root_is_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    store = LocalDocumentStore(blocker)
    with pytest.raises(StorageUnavailable):
        await store.health()
    with pytest.raises(StorageUnavailable):
        await store.put(KEY, PDF, PDF_TYPE)
    # A missing root is created on demand, like by a first put.
    fresh = LocalDocumentStore(tmp_path / "new" / "root")
    await fresh.health()
    assert tree(tmp_path / "new") == ["root"]


# --- factory --------------------------------------------------------------------------------


async def test_factory_local_resolves_relative_dir_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = document_store(Settings(storage_backend="local", storage_dir="var/documents"))
    assert isinstance(store, LocalDocumentStore)
    assert store.root == (tmp_path / "var" / "documents").resolve()
    monkeypatch.chdir("/")
    await store.put(KEY, PDF, PDF_TYPE)
    assert (tmp_path / "var" / "documents" / KEY).read_bytes() == PDF
    absolute = document_store(Settings(storage_dir=str(tmp_path / "abs")))
    assert isinstance(absolute, LocalDocumentStore)
    assert absolute.root == (tmp_path / "abs").resolve()


async def test_factory_bunny(standin_server: tuple[str, BunnyStandin]) -> None:
    url, standin = standin_server
    settings = Settings(
        storage_backend="bunny",
        bunny_storage_endpoint=url,
        bunny_storage_zone=ZONE,
        bunny_access_key=SecretStr(ACCESS_KEY),
        storage_timeout_s=3.0,
    )
    store = document_store(settings)
    try:
        assert isinstance(store, BunnyDocumentStore)
        await store.health()
        await store.put(KEY, PDF, PDF_TYPE)
        assert standin.objects[KEY].data == PDF
    finally:
        await store.aclose()
