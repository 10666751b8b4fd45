"""`document_store(settings)`: the configured document store."""

from __future__ import annotations

from pathlib import Path

from commdesk_billing.config import Settings
from commdesk_billing.storage.base import DocumentStore
from commdesk_billing.storage.bunny import BunnyDocumentStore
from commdesk_billing.storage.local import LocalDocumentStore


def document_store(settings: Settings) -> DocumentStore:
    """Build the store named by BILLING_STORAGE_BACKEND; the caller owns it (`aclose`)."""
    if settings.storage_backend == "bunny":
        # Settings already refuses "bunny" without a zone and an access key.
        return BunnyDocumentStore(
            endpoint=settings.bunny_storage_endpoint,
            zone=settings.bunny_storage_zone,
            access_key=settings.bunny_access_key.get_secret_value(),
            timeout_s=settings.storage_timeout_s,
        )
    root = Path(settings.storage_dir).expanduser()
    # A relative directory is taken from the working directory at construction time, and
    # pinned: a later chdir must not move where invoices are written.
    if not root.is_absolute():
        root = Path.cwd() / root
    return LocalDocumentStore(root)
