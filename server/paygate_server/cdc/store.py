"""Where archive objects live: a local folder, or an S3-compatible bucket (:mod:`.s3`).

An object store here is a flat namespace of immutable objects: ``put`` makes an object
appear whole or not at all, ``put_new`` too but only where there is none yet (else
:class:`ObjectExists`: what one writer archived, another never replaces), ``get`` reads one,
``list`` names them in order.
"""
from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Protocol

from paygate_server.config import Settings
from paygate_server.private_files import fsync_dir, private_dir

__all__ = ["ObjectStore", "LocalStore", "ObjectMissing", "ObjectExists", "store_for"]


class ObjectMissing(KeyError):
    """No object by that name."""


class ObjectExists(Exception):
    """``put_new``: an object by that name exists already (it was left as it was)."""


class ObjectStore(Protocol):
    async def put(self, name: str, data: bytes) -> None: ...

    async def put_new(self, name: str, data: bytes) -> None:
        """Like ``put``, only if no object has that name; else ObjectExists."""
        ...

    async def get(self, name: str) -> bytes: ...

    async def list(self, prefix: str) -> list[str]:
        """Names starting with ``prefix``, sorted."""
        ...

    def describe(self) -> str: ...

    async def close(self) -> None: ...


class LocalStore:
    """A folder. ``put`` writes a temporary file, fsyncs it, renames it into place and
    fsyncs the folder (and any folder it had to create, into its parent): after a crash an
    object is either complete or absent. ``put_new``
    links it into place instead, which fails if the name is taken (atomic, as the rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"bad object name {name!r}")
        return self.root / name

    def _put(self, name: str, data: bytes, replace: bool = True) -> None:
        path = self._path(name)
        private_dir(path.parent, durable=True)  # a new segment's folder survives a crash too
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # payment history: owner only
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if replace:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise ObjectExists(name) from None
                finally:
                    tmp.unlink()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def _get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(name) from None

    def _list(self, prefix: str) -> list[str]:
        folder, _, start = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return []
        names = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-"):
                name = path.relative_to(self.root).as_posix()
                if name.startswith(prefix):
                    names.append(name)
        return sorted(names)

    async def put(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, name, data)

    async def put_new(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, name, data, False)

    async def get(self, name: str) -> bytes:
        return await asyncio.to_thread(self._get, name)

    async def list(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._list, prefix)

    async def close(self) -> None:
        return None


def store_for(settings: Settings) -> ObjectStore:
    """The S3 bucket when ``PAYGATE_ARCHIVE_S3_BUCKET`` is set, else the local folder."""
    if settings.archive_s3_bucket:
        from paygate_server.cdc.s3 import S3Store

        return S3Store.from_settings(settings)
    return LocalStore(settings.resolved_archive_dir)
