"""Result files in a local directory: the embedded default (``BACKSERV_STORAGE_DIR``).

A file is written to ``name.<tag>.part`` and renamed into place when complete, so a reader
never sees half a file; blocking file calls run in worker threads (a write's in the storage's
own, ``FileThreads``: one wake-up of the loop answers every write done at once). A file of at
most ``GATHER`` bytes (a provider's image) is gathered first and written in one thread call:
directory, file and rename, not a thread hop for each; a larger one is streamed chunk by
chunk.

A small file costs five system calls: ``mkdir`` of the job's folder (its parent is made only
when that fails), ``open`` (exclusive: never through a file or link already there), ``write``,
``close`` and ``rename``. They are made with ``os`` directly: ``Path.open`` adds an ``fstat``
and an ``ioctl`` (buffered I/O asks whether the file is a terminal), ``Path.mkdir`` and the
path objects a few microseconds of Python, and a random temporary name a ``getrandom``; the
temporary names are a random tag per storage and a counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from gateway.errors import StorageUnavailable
from gateway.storage.base import (
    FileInfo,
    ResultStorage,
    content_type_of,
    relative_key,
    safe_job,
    safe_names,
)
from gateway.storage.file_threads import FileThreads
from gateway.storage.sources import OutputSource

READ_CHUNK = 256 * 1024
#: a file up to this size is gathered in memory and written in one thread call
GATHER = 1024 * 1024


#: a temporary file's flags: created here (never an existing file or link), closed on exec
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _make_folder(folder: str) -> None:
    """The job's folder, made if missing: one ``mkdir`` when its parent exists (a new job's
    folder never does; its parent, one of 256, nearly always)."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)


def _write_whole(folder: str, target: str, tmp: str, data: bytes | bytearray) -> None:
    """The whole file, atomically (in a worker thread: it always closes what it opens)."""
    _make_folder(folder)
    fd = os.open(tmp, _CREATE, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class LocalStorage(ResultStorage):
    kind = "local"

    def __init__(self, root: Path, sources: OutputSource) -> None:
        super().__init__(sources)
        self.root = root
        self._root = os.fspath(root)
        # temporary names unique to this storage object (and so to this process)
        self._tag = secrets.token_hex(4)
        self._serial = itertools.count()
        self._files = FileThreads()

    def path(self, job_id: str, name: str) -> Path | None:
        """The file's path, or None when the names are not ones this storage produces."""
        if not safe_names(job_id, name):
            return None
        return self.root / relative_key(job_id, name)

    async def write(
        self, job_id: str, name: str, chunks: AsyncIterator[bytes], content_type: str
    ) -> int:
        if not safe_names(job_id, name):
            raise ValueError(f"unsafe file name for job {job_id!r}")
        folder = f"{self._root}/{relative_key(job_id)}"
        target = folder + name
        tmp = f"{target}.{self._tag}{next(self._serial):x}.part"
        stream = aiter(chunks)
        gathered = bytearray()
        async for chunk in stream:
            gathered += chunk
            if len(gathered) > GATHER:
                break
        else:
            await self._files.run(_write_whole, folder, target, tmp, gathered)
            return len(gathered)
        await self._files.run(_make_folder, folder)
        # opened and closed on the loop (each a quick system call), never in a thread: a
        # task cancelled while a thread opened the file would leave it open, unreferenced
        file: BinaryIO = os.fdopen(os.open(tmp, _CREATE, 0o666), "wb")
        size = len(gathered)
        try:
            try:
                await self._files.run(file.write, gathered)
                del gathered
                async for chunk in stream:
                    await self._files.run(file.write, chunk)
                    size += len(chunk)
            finally:
                file.close()
            await self._files.run(os.replace, tmp, target)
        except BaseException:
            await self._files.run(_remove, tmp)
            raise
        return size

    async def stat(self, job_id: str, name: str) -> FileInfo | None:
        path = self.path(job_id, name)
        if path is None:
            return None
        try:
            st = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        return FileInfo(st.st_size, content_type_of(name), st.st_mtime)

    async def read(self, job_id: str, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        path = self.path(job_id, name)
        if path is None:
            return
        try:
            file: BinaryIO = path.open("rb")  # on the loop: see write()
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            await asyncio.to_thread(file.seek, start)
            left = end - start
            while left > 0:
                chunk = await asyncio.to_thread(file.read, min(READ_CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        finally:
            file.close()

    async def delete(self, job_id: str) -> None:
        if safe_job(job_id):
            await asyncio.to_thread(shutil.rmtree, self.root / relative_key(job_id), True)

    async def check(self) -> str:
        def probe() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise PermissionError(f"{self.root} is not writable")

        try:
            await asyncio.to_thread(probe)
        except OSError as exc:
            raise StorageUnavailable(
                f"the storage directory {self.root} cannot be written: {exc.strerror or exc}"
            ) from None
        return f"local directory {self.root}"
