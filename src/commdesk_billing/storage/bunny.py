"""`BunnyDocumentStore`: documents in a Bunny.net Edge Storage zone, over its HTTP API.

    PUT    {endpoint}/{zone}/{key}   body = the bytes; 201 on success
    GET    {endpoint}/{zone}/{key}   the bytes; 404 when missing
    DELETE {endpoint}/{zone}/{key}   200; 404 when missing
    GET    {endpoint}/{zone}/        the root directory listing (JSON array): health check

Every request carries `AccessKey: <storage zone password>`; a wrong key gets 401.

Write-once on a store that overwrites: Bunny's PUT silently replaces an existing file and
offers no conditional upload, so `put` first GETs the key and compares the stored bytes
with ours (identical: done without uploading; different: ObjectConflict; 404: upload).
A full GET rather than comparing the `Checksum` of a directory listing because invoice PDFs
are small (tens of KB), a listing's cost grows with the directory (a year of invoices in
one folder), and a byte comparison does not depend on a listing field being filled in. The
check and the upload are two requests, so two writers racing on one key with different
bytes could both pass the check; keys are invoice numbers allocated once in the database,
so only a retry of the same document can race, and that writes identical bytes.

Uploads send `Checksum: <SHA-256, uppercase hex>`: Bunny recomputes it and refuses (400) a
body damaged in transit instead of storing it.

Connection errors, timeouts and 5xx are retried with jittered exponential backoff (every
call here is idempotent: GET, DELETE, and a PUT of the very bytes already checked); 4xx
are answers about the request itself and are not retried. The access key lives only in the
request headers: it is never logged, put in an exception or shown by repr().
"""

from __future__ import annotations

import asyncio
import json
import random
import re

import httpx
import structlog

from commdesk_billing.storage.base import (
    ObjectConflict,
    ObjectNotFound,
    StorageAuthError,
    StorageError,
    StorageUnavailable,
    StoredObject,
    validate_key,
)

log = structlog.get_logger(__name__)

_ZONE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class BunnyDocumentStore:
    def __init__(
        self,
        endpoint: str,
        zone: str,
        access_key: str,
        timeout_s: float = 15.0,
        client: httpx.AsyncClient | None = None,
        *,
        max_retries: int = 3,
        backoff_s: float = 0.25,
        max_backoff_s: float = 4.0,
    ) -> None:
        if not endpoint.startswith(("https://", "http://")):
            raise ValueError("Bunny storage endpoint must be an http(s) URL")
        if not _ZONE.fullmatch(zone):
            raise ValueError("Bunny storage zone must be 1-64 characters of [A-Za-z0-9_-]")
        if not access_key:
            raise ValueError("Bunny storage access key is empty")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.endpoint = endpoint.rstrip("/")
        self.zone = zone
        self._base = f"{self.endpoint}/{zone}/"
        self._headers = {"AccessKey": access_key}
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # Passed per request as well, so the configured timeout also governs a shared client.
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        self._owns_client = client is None
        self._http = client or httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return f"BunnyDocumentStore(endpoint={self.endpoint!r}, zone={self.zone!r})"

    async def aclose(self) -> None:
        # A client handed in belongs to the caller, who may share it.
        if self._owns_client:
            await self._http.aclose()

    async def __aenter__(self) -> BunnyDocumentStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the DocumentStore API -------------------------------------------------------------

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        validate_key(key)
        stored = StoredObject.of(key, data)
        current = await self._fetch("put.check", key)
        if current is not None:
            if current == data:
                return stored
            raise ObjectConflict(f"object {key!r} already exists with different content", key=key)
        # The raw bytes go up as application/octet-stream, as in Bunny's upload reference.
        # `content_type` is not sent: we do not rely on Bunny keeping it (our readers know
        # they stored PDFs), and one fixed type keeps the request identical on every retry.
        resp = await self._request(
            "put",
            "PUT",
            key,
            content=data,
            headers={
                "Content-Type": "application/octet-stream",
                "Checksum": stored.sha256.upper(),
            },
        )
        if resp.status_code in (200, 201):  # Bunny answers 201 "File uploaded."
            return stored
        if resp.status_code == 400:
            raise StorageError(
                f"Bunny refused the upload of {key!r} (checksum mismatch or invalid path): "
                f"{_message(resp)}",
                key=key,
                status=400,
            )
        if resp.status_code == 404:
            raise StorageError(f"Bunny storage zone {self.zone!r} not found", key=key, status=404)
        raise _unexpected("put", key, resp)

    async def get(self, key: str) -> bytes:
        validate_key(key)
        data = await self._fetch("get", key)
        if data is None:
            raise ObjectNotFound(f"no object {key!r}", key=key, status=404)
        return data

    async def delete(self, key: str) -> None:
        validate_key(key)
        resp = await self._request("delete", "DELETE", key)
        # 404: already gone, possibly removed by an earlier attempt whose answer was lost.
        if resp.status_code in (200, 204, 404):
            return
        raise _unexpected("delete", key, resp)

    async def health(self) -> None:
        """List the zone's root directory: proves endpoint, zone and key in one cheap call."""
        try:
            resp = await self._request("health", "GET", "")
        except StorageUnavailable:
            raise
        except StorageError as exc:  # e.g. a rejected key: the store is unusable all the same
            raise StorageUnavailable(
                f"Bunny storage is not usable: {exc}", status=exc.status
            ) from exc
        if resp.status_code != 200:
            raise StorageUnavailable(
                f"Bunny storage zone {self.zone!r} listing answered HTTP {resp.status_code}: "
                f"{_message(resp)}",
                status=resp.status_code,
            )
        try:
            listing = json.loads(resp.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            listing = None
        if not isinstance(listing, list):
            raise StorageUnavailable(
                "Bunny storage listing is not a JSON array (wrong endpoint?)", status=200
            )

    # --- transport ------------------------------------------------------------------------

    async def _fetch(self, op: str, key: str) -> bytes | None:
        """The object's bytes, or None when Bunny says 404."""
        resp = await self._request(op, "GET", key)
        if resp.status_code == 200:
            return resp.content
        if resp.status_code == 404:
            return None
        raise _unexpected(op, key, resp)

    async def _request(
        self,
        op: str,
        method: str,
        key: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send with retries; returns any response that is not a 5xx, 401, 403 or 429.

        Raises StorageUnavailable once the retries are spent (or on 429) and StorageAuthError
        at once."""
        all_headers = {**self._headers, **(headers or {})}
        url = self._base + key
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await self._http.request(
                    method, url, content=content, headers=all_headers, timeout=self._timeout
                )
            except httpx.TimeoutException as exc:
                error: str = f"timed out ({type(exc).__name__})"
                status: int | None = None
            except httpx.TransportError as exc:
                error = f"could not reach Bunny storage: {type(exc).__name__}: {exc}"
                status = None
            else:
                if resp.status_code in (401, 403):
                    raise StorageAuthError(
                        f"Bunny storage refused the access key for zone {self.zone!r} "
                        f"(HTTP {resp.status_code})",
                        key=key or None,
                        status=resp.status_code,
                    )
                if resp.status_code == 429:
                    # "Later", not "never": reported as unavailable, but not retried here
                    # (4xx are never retried; the caller's own retry policy decides).
                    raise StorageUnavailable(
                        f"Bunny storage rate-limited the {op} of {key or '/'!r} (HTTP 429)",
                        key=key or None,
                        status=429,
                    )
                if resp.status_code < 500:
                    return resp
                error = f"HTTP {resp.status_code}: {_message(resp)}"
                status = resp.status_code
            if attempt > self.max_retries:
                raise StorageUnavailable(
                    f"Bunny storage {op} of {key or '/'!r} failed after {attempt} attempts: "
                    f"{error}",
                    key=key or None,
                    status=status,
                )
            wait = self._wait(attempt)
            log.warning(
                "storage.bunny.retry",
                op=op,
                key=key,
                attempt=attempt,
                wait_s=round(wait, 3),
                error=error,
            )
            await asyncio.sleep(wait)

    def _wait(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        # Full-range jitter in the upper half: spreads retries of many workers after a blip.
        return random.uniform(ceiling / 2, ceiling)


def _message(resp: httpx.Response) -> str:
    """Bunny's error bodies are `{"HttpCode": n, "Message": "..."}`; fall back to the text."""
    try:
        body = json.loads(resp.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("Message"), str):
        return str(body["Message"])[:200]
    return resp.text[:200] or resp.reason_phrase


def _unexpected(op: str, key: str, resp: httpx.Response) -> StorageError:
    return StorageError(
        f"Bunny storage {op} of {key!r}: unexpected HTTP {resp.status_code}: {_message(resp)}",
        key=key,
        status=resp.status_code,
    )
