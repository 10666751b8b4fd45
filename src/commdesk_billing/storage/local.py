"""`LocalDocumentStore`: documents as files under a root directory (development, tests,
single-host deployments).

Writes are atomic and durable: the bytes go to a temporary file in the destination's own
directory (so the final step never crosses filesystems), are fsynced, and are then published
under the final name in one step, after which the directory is fsynced. A reader therefore
sees either no object or the complete one, never a torn PDF, even across a crash.

The publishing step is `os.link(tmp, final)` rather than `os.replace`: a hard link fails
with EEXIST when the name is taken, so "create only if absent" is decided atomically by the
kernel, even between processes, and a concurrent writer of different bytes can never
replace a stored document. On filesystems without hard links (some FUSE and network mounts)
it falls back to check-then-`os.replace` under a lock, which is atomic for readers but only
serialises writers of this one process.

Blocking file calls run in worker threads (`asyncio.to_thread`) to keep the event loop free.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import tempfile
import threading
from pathlib import Path

from commdesk_billing.storage.base import (
    ObjectConflict,
    ObjectNotFound,
    StorageUnavailable,
    StoredObject,
    validate_key,
)

# errno values meaning "this filesystem cannot make hard links" (EPERM: Linux on FAT/exFAT).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})
_TMP_SUFFIX = ".tmp"


class LocalDocumentStore:
    def __init__(self, root: Path) -> None:
        # Resolved once: every object path is checked against this exact, symlink-free prefix.
        self.root = Path(root).resolve()
        self._replace_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalDocumentStore(root={str(self.root)!r})"

    # --- the DocumentStore API -------------------------------------------------------------

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        validate_key(key)
        return await asyncio.to_thread(self._put, key, bytes(data))

    async def get(self, key: str) -> bytes:
        validate_key(key)
        return await asyncio.to_thread(self._get, key)

    async def delete(self, key: str) -> None:
        validate_key(key)
        await asyncio.to_thread(self._delete, key)

    async def health(self) -> None:
        await asyncio.to_thread(self._health)

    async def aclose(self) -> None:
        return None

    # --- blocking parts (worker threads) ---------------------------------------------------

    def _path(self, key: str) -> Path:
        """The file of `key`, guaranteed to lie under the root.

        validate_key already rules out `..` and absolute keys; resolving catches the rest,
        i.e. a symlink inside the root that points elsewhere."""
        path = (self.root / key).resolve()
        if path == self.root or not path.is_relative_to(self.root):
            raise ValueError(f"object key {key!r} leads outside the store's root")
        return path

    def _put(self, key: str, data: bytes) -> StoredObject:
        stored = StoredObject.of(key, data)
        path = self._path(key)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"document root {self.root} is not usable: {exc}") from exc
        try:
            self._make_dirs(path.parent)
        except (FileExistsError, NotADirectoryError) as exc:
            # A prefix of the key is itself an object (`a.pdf` exists, `a.pdf/b` is asked).
            raise ObjectConflict(
                f"object key {key!r} runs through an existing object", key=key
            ) from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot create directories for {key!r}: {exc}") from exc
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return self._existing(key, path, data, stored)
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                return self._replace_if_absent(key, tmp, path, data, stored)
            _fsync_dir(path.parent)
            return stored
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {key!r}: {exc}", key=key) from exc
        finally:
            if tmp is not None:
                # After a successful link the temporary name is a second link to the same
                # file; dropping it leaves exactly the object. On failure it removes the debris.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _replace_if_absent(
        self, key: str, tmp: str, path: Path, data: bytes, stored: StoredObject
    ) -> StoredObject:
        # Without hard links, check-then-replace: the lock makes it exact within this process.
        with self._replace_lock:
            if os.path.lexists(path):
                return self._existing(key, path, data, stored)
            os.replace(tmp, path)
        _fsync_dir(path.parent)
        return stored

    def _existing(self, key: str, path: Path, data: bytes, stored: StoredObject) -> StoredObject:
        """The key is taken: succeed if it holds exactly `data`, else refuse."""
        try:
            current = path.read_bytes()
        except (IsADirectoryError, PermissionError) as exc:
            if path.is_dir():
                raise ObjectConflict(f"object key {key!r} names a directory", key=key) from exc
            raise
        if current != data:
            raise ObjectConflict(f"object {key!r} already exists with different content", key=key)
        return stored

    def _get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(f"no object {key!r}", key=key) from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key!r}: {exc}", key=key) from exc

    def _delete(self, key: str) -> None:
        path = self._path(key)
        try:
            if stat.S_ISDIR(path.lstat().st_mode):
                return  # a directory is not an object: nothing stored under this key
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageUnavailable(f"cannot delete {key!r}: {exc}", key=key) from exc
        # Empty parent directories are left alone: removing them would race a concurrent
        # put into the same directory, and they cost nothing.
        with contextlib.suppress(OSError):
            _fsync_dir(path.parent)

    def _health(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # Prove the root is writable by writing, not by os.access: the latter ignores
            # read-only mounts in some setups and says nothing about a full disk.
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".health.", suffix=_TMP_SUFFIX)
            try:
                os.write(fd, b"ok")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            raise StorageUnavailable(f"document root {self.root} is not usable: {exc}") from exc

    def _make_dirs(self, directory: Path) -> None:
        """Create `directory` and its missing parents under the root, fsyncing each parent
        whose entries changed so a new directory survives a crash like the file in it."""
        current = self.root
        for part in directory.relative_to(self.root).parts:
            current = current / part
            try:
                current.mkdir()
            except FileExistsError:
                if not current.is_dir():
                    raise
                continue
            _fsync_dir(current.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a directory's entries (a new or removed name) durable. POSIX only: Windows
    cannot open directories, and its rename/link are journaled by NTFS itself."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
