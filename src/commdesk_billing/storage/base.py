"""The document-store contract for invoice PDFs: keys, errors and write-once semantics.

Overwrite semantics (both backends): a key names one document forever.

* `put` of bytes identical to the stored object succeeds and reports the stored object, so
  a caller that crashed after uploading (or timed out without knowing) may simply repeat it.
* `put` of different bytes to an existing key raises `ObjectConflict` and leaves the stored
  object untouched: an issued tax document is never silently replaced. A corrected invoice
  is a new document (a credit note and a new number), never a new version under the old key.
* `delete` removes the object if present and is a no-op otherwise; afterwards the key may be
  written again (deletion is an explicit, separate decision of the caller).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

MAX_KEY_LENGTH = 512
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    sha256: str  # lowercase hex (Bunny's `Checksum` header wants it uppercase: see bunny.py)

    @classmethod
    def of(cls, key: str, data: bytes) -> StoredObject:
        return cls(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())


class StorageError(Exception):
    """Base of every failure of a document store (invalid keys raise ValueError instead)."""

    def __init__(self, message: str, *, key: str | None = None, status: int | None = None):
        super().__init__(message)
        self.key = key
        self.status = status


class ObjectNotFound(StorageError):
    """No object is stored under the key."""


class ObjectConflict(StorageError):
    """The key already holds different bytes (or cannot hold an object at all)."""


class StorageUnavailable(StorageError):
    """The store could not be used: network failure, timeout or 5xx after the retries, a
    full or read-only disk. The outcome of a write that failed this way is unknown; repeating
    the same `put` is safe."""


class StorageAuthError(StorageError):
    """The store refused our credentials (HTTP 401/403)."""


@runtime_checkable
class DocumentStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Store `data` under `key` (write-once: see the module docstring).

        `content_type` is part of the contract for backends that keep it; neither current
        backend does (the local disk has nowhere to put it and Bunny's upload is sent as
        application/octet-stream), so readers must know what they stored."""
        ...

    async def get(self, key: str) -> bytes:
        """The stored bytes; raises ObjectNotFound."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    async def health(self) -> None:
        """Return if the store is usable; raise StorageUnavailable otherwise."""
        ...

    async def aclose(self) -> None: ...


def validate_key(key: str) -> str:
    """Return `key` if it is a safe object key, else raise ValueError.

    The one gate for every backend, applied before any I/O: a key is relative, made of
    `/`-separated segments of `[A-Za-z0-9._-]`, with no empty, `.` or `..` segment, and at
    most 512 characters. That alphabet needs no URL escaping and cannot spell a path outside
    the store's root on any filesystem, e.g. `invoices/2026-27/CDB-2026-27-000001.pdf`.
    """
    if not isinstance(key, str):
        raise ValueError(f"object key must be a string, not {type(key).__name__}")
    if not key:
        raise ValueError("object key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"object key is longer than {MAX_KEY_LENGTH} characters")
    for segment in key.split("/"):
        # fullmatch, not match with `$`: `$` would also accept a trailing newline.
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(f"invalid object key {key!r}: segments must be [A-Za-z0-9._-]+")
        if segment in (".", ".."):
            raise ValueError(f"invalid object key {key!r}: '.' and '..' segments")
    return key
