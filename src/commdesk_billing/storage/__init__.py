"""Document storage for invoice PDFs: one write-once interface, a local-disk backend and a
Bunny.net Edge Storage backend (plus a local stand-in of Bunny's API for tests)."""

from commdesk_billing.storage.base import (
    MAX_KEY_LENGTH,
    DocumentStore,
    ObjectConflict,
    ObjectNotFound,
    StorageAuthError,
    StorageError,
    StorageUnavailable,
    StoredObject,
    validate_key,
)
from commdesk_billing.storage.bunny import BunnyDocumentStore
from commdesk_billing.storage.factory import document_store
from commdesk_billing.storage.local import LocalDocumentStore

__all__ = [
    "MAX_KEY_LENGTH",
    "BunnyDocumentStore",
    "DocumentStore",
    "LocalDocumentStore",
    "ObjectConflict",
    "ObjectNotFound",
    "StorageAuthError",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "document_store",
    "validate_key",
]
