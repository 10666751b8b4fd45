"""A local, in-memory stand-in for Bunny.net Edge Storage, speaking its HTTP API.

`create_bunny_standin(access_key, zone)` returns a Starlette app serving one storage zone:

    PUT    /{zone}/{path}     store the body (overwrites, as Bunny does); 201
                              `{"HttpCode":201,"Message":"File uploaded."}`; with a
                              `Checksum` header (SHA-256 hex) that does not match: 400
    GET    /{zone}/{path}     the bytes; 404 `{"HttpCode":404,"Message":"Object Not Found"}`
    GET    /{zone}/ , /{zone}/dir/
                              the directory listing: a JSON array of storage objects
                              (an unknown directory lists as `[]`, like Bunny)
    DELETE /{zone}/{path}     200, or 404 when missing; `dir/` deletes the whole directory

A wrong or missing `AccessKey` gets 401 `{"HttpCode":401,"Message":"Unauthorized"}`; an
unknown zone gets 404 (checked first). It keeps nothing on disk and is meant for tests and
local development, not as a storage server.

Fault hooks for tests, on the `BunnyStandin` at `app.state.standin` (see `standin_of`):
`fail_next(n, status=503)` answers the next n matching requests with that status, and
`stall_next(n, seconds)` delays them (to provoke client timeouts). `requests` records
every request's method, path and Checksum header (never the AccessKey).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Fixed ids: listings are stable across requests, which keeps tests readable.
_USER_ID = "00000000-0000-4000-8000-00000000b0bb"
_ZONE_ID = 4242
_SERVER_ID = 1


def _timestamp() -> str:
    # Bunny's listings show UTC times without an offset and with milliseconds.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


@dataclass(slots=True)
class _Object:
    data: bytes
    checksum: str  # SHA-256, uppercase hex, as Bunny lists it
    created: str
    changed: str
    guid: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(slots=True)
class _Fault:
    remaining: int
    method: str | None
    status: int | None = None
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SeenRequest:
    method: str
    path: str
    checksum: str | None


class BunnyStandin:
    """The zone's state and the request handler; reach it as `app.state.standin`."""

    def __init__(self, access_key: str, zone: str) -> None:
        if not access_key or not zone:
            raise ValueError("the stand-in needs an access key and a zone name")
        self.access_key = access_key
        self.zone = zone
        self.objects: dict[str, _Object] = {}
        self.requests: list[SeenRequest] = []
        self._faults: list[_Fault] = []

    def __repr__(self) -> str:
        return f"BunnyStandin(zone={self.zone!r}, objects={len(self.objects)})"

    # --- fault hooks ----------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503, *, method: str | None = None) -> None:
        """Answer the next `n` requests (of `method`, if given) with `status`."""
        self._faults.append(_Fault(remaining=n, method=method, status=status))

    def stall_next(self, n: int, seconds: float, *, method: str | None = None) -> None:
        """Hold the next `n` requests (of `method`, if given) for `seconds` before answering."""
        self._faults.append(_Fault(remaining=n, method=method, delay_s=seconds))

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method in (None, method):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    # --- the API --------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        method = request.method
        path = request.url.path
        self.requests.append(SeenRequest(method, path, request.headers.get("checksum")))
        fault = self._take_fault(method)
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.status is not None:
                return _answer(fault.status, "Injected fault")
        zone, _, rest = path.lstrip("/").partition("/")
        if zone != self.zone or not path.startswith(f"/{zone}/"):
            return _answer(404, "Object Not Found")
        given = request.headers.get("accesskey", "")
        if not hmac.compare_digest(given.encode(), self.access_key.encode()):
            return _answer(401, "Unauthorized")
        is_dir = rest == "" or rest.endswith("/")
        if method == "GET":
            return self._list(rest) if is_dir else self._download(rest)
        if method == "PUT":
            if is_dir:
                return _answer(400, "Invalid path: a file name is required.")
            return self._upload(rest, await request.body(), request.headers.get("checksum"))
        if method == "DELETE":
            return self._delete(rest, is_dir)
        return _answer(405, "Method Not Allowed")

    def _download(self, key: str) -> Response:
        obj = self.objects.get(key)
        if obj is None:
            return _answer(404, "Object Not Found")
        return Response(obj.data, media_type="application/octet-stream")

    def _upload(self, key: str, data: bytes, checksum: str | None) -> Response:
        actual = hashlib.sha256(data).hexdigest().upper()
        # Bunny documents the header as uppercase hex; case is forgiven here.
        if checksum is not None and checksum.strip().upper() != actual:
            return _answer(400, "Checksum and file contents mismatched.")
        now = _timestamp()
        previous = self.objects.get(key)
        # A PUT to an existing path replaces it, exactly like Bunny: write-once is the
        # client's job (see bunny.py), and the stand-in must not hide that.
        self.objects[key] = _Object(
            data=data,
            checksum=actual,
            created=previous.created if previous else now,
            changed=now,
        )
        return _answer(201, "File uploaded.")

    def _delete(self, key: str, is_dir: bool) -> Response:
        if is_dir:
            doomed = [k for k in self.objects if k.startswith(key)]
            for k in doomed:
                del self.objects[k]
            if not doomed:
                return _answer(404, "Object Not Found")
            return _answer(200, "Directory deleted successfuly.")  # sic: Bunny's spelling
        if self.objects.pop(key, None) is None:
            return _answer(404, "Object Not Found")
        return _answer(200, "File deleted successfuly.")

    def _list(self, prefix: str) -> Response:
        files: list[dict[str, Any]] = []
        dirs: dict[str, dict[str, Any]] = {}
        for key, obj in sorted(self.objects.items()):
            if not key.startswith(prefix):
                continue
            name, slash, _ = key[len(prefix) :].partition("/")
            if slash:
                dirs.setdefault(name, self._entry(prefix, name, obj, is_dir=True))
            else:
                files.append(self._entry(prefix, name, obj, is_dir=False))
        return JSONResponse([*dirs.values(), *files])

    def _entry(self, prefix: str, name: str, obj: _Object, *, is_dir: bool) -> dict[str, Any]:
        return {
            "Guid": str(uuid.uuid5(uuid.NAMESPACE_URL, prefix + name)) if is_dir else obj.guid,
            "StorageZoneName": self.zone,
            "Path": f"/{self.zone}/{prefix}",
            "ObjectName": name,
            "Length": 0 if is_dir else len(obj.data),
            "LastChanged": obj.changed,
            "ServerId": _SERVER_ID,
            "ArrayNumber": 0,
            "IsDirectory": is_dir,
            "UserId": _USER_ID,
            "ContentType": "",
            "DateCreated": obj.created,
            "StorageZoneId": _ZONE_ID,
            "Checksum": None if is_dir else obj.checksum,
            "ReplicatedZones": "",
        }


def _answer(status: int, message: str) -> JSONResponse:
    return JSONResponse({"HttpCode": status, "Message": message}, status_code=status)


def create_bunny_standin(access_key: str, zone: str) -> Starlette:
    standin = BunnyStandin(access_key, zone)
    app = Starlette(
        routes=[
            Route("/{path:path}", standin.handle, methods=["GET", "PUT", "DELETE"]),
        ]
    )
    app.state.standin = standin
    return app


def standin_of(app: Starlette) -> BunnyStandin:
    """The typed state behind an app made by `create_bunny_standin`."""
    standin = app.state.standin
    if not isinstance(standin, BunnyStandin):
        raise TypeError("not a Bunny stand-in app")
    return standin
