"""Client side of the shared-memory object store: write an object's file, map it back zero-copy.

Touches the file system only (files under the node's shared-memory directory or its spill
directory); no sockets. An object file holds:

    8 bytes  little-endian length N of the pickle stream
    8 bytes  number K of out-of-band buffers
    K x 16   (offset, length) of each buffer, offsets from the start of the file, 64-byte aligned
    N bytes  the pickle stream, then each buffer at its offset

Readers mmap the file read-only and hand memoryviews of the buffers to pickle, so numpy arrays
come back as read-only views of shared memory: no copy. A mapping stays valid after the store
unlinks or spills the file, which is what keeps a value alive while a reader holds it.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
from collections.abc import Sequence

_ALIGN = 64
_HEAD = struct.Struct("<QQ")
_SLOT = struct.Struct("<QQ")


class ObjectNotFound(FileNotFoundError):
    """The object's file exists neither in shared memory nor in the spill directory."""


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def layout(data_len: int, buffer_lens: Sequence[int]) -> tuple[list[int], int]:
    """Offsets of each buffer and the total file size for an object with these parts."""
    pos = _aligned(_HEAD.size + _SLOT.size * len(buffer_lens) + data_len)
    offsets = []
    for n in buffer_lens:
        offsets.append(pos)
        pos = _aligned(pos + n)
    return offsets, max(pos, 1)


def encoded_size(frames: Sequence[memoryview | bytes]) -> int:
    data, *buffers = frames
    return layout(len(data), [memoryview(b).nbytes for b in buffers])[1]


def write_object(path: str, frames: Sequence[memoryview | bytes]) -> int:
    """Write [pickle stream, *buffers] to a new file at `path`; returns the file's size.

    Raises OSError(ENOSPC) when the file system is full; the partial file is removed.
    """
    data, *buffers = frames
    views = [memoryview(b).cast("B") for b in buffers]
    offsets, total = layout(len(data), [v.nbytes for v in views])
    head = bytearray(_HEAD.pack(len(data), len(views)))
    for off, v in zip(offsets, views):
        head += _SLOT.pack(off, v.nbytes)
    head += data
    tmp = f"{path}.tmp{os.getpid()}"
    if total < RECYCLE_MIN_BYTES or not _claim_recycled(os.path.dirname(path), total, tmp):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    else:
        fd = os.open(tmp, os.O_WRONLY)
    try:
        os.ftruncate(fd, total)
        _pwrite_all(fd, head, 0)
        for off, v in zip(offsets, views):
            _pwrite_all(fd, v, off)
    except BaseException:
        os.close(fd)
        _unlink_quiet(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)  # readers never see a half-written object
    return total


# Freed object files at least this large are kept in the store's pool for reuse: writing into
# pages a file already has is several times faster than having tmpfs allocate and zero new ones.
RECYCLE_MIN_BYTES = 1 << 20
POOL_DIR = ".free"


def _claim_recycled(directory: str, size: int, claim_path: str) -> bool:
    """Take a pooled file of a size close to `size` by renaming it to `claim_path` (atomic)."""
    pool = os.path.join(directory, POOL_DIR)
    try:
        names = os.listdir(pool)
    except FileNotFoundError:
        return False
    best = None
    for name in names:
        try:
            pooled = int(name.split("-", 1)[0])
        except ValueError:
            continue
        if size <= pooled <= 2 * size and (best is None or pooled < best[0]):
            best = (pooled, name)
    if best is None:
        return False
    try:
        os.rename(os.path.join(pool, best[1]), claim_path)
    except FileNotFoundError:
        return False  # another writer took it first
    return True


def recycle(path: str, size: int) -> bool:
    """Move a freed object file into its directory's pool instead of deleting it.

    Refused (False) when some process still maps the file: its arrays must keep their contents,
    so the file is unlinked instead and its memory goes away with the last mapping.
    """
    pool = os.path.join(os.path.dirname(path), POOL_DIR)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        os.makedirs(pool, exist_ok=True)
        os.rename(path, os.path.join(pool, f"{size}-{os.urandom(6).hex()}"))
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)
    return True


def pool_usage(directory: str) -> tuple[int, list[tuple[str, int]]]:
    """Bytes held by the pool of `directory`, and its files (path, size)."""
    pool = os.path.join(directory, POOL_DIR)
    files = []
    try:
        for entry in os.scandir(pool):
            try:
                files.append((entry.path, int(entry.name.split("-", 1)[0])))
            except ValueError:
                continue
    except FileNotFoundError:
        pass
    return sum(size for _, size in files), files


def _pwrite_all(fd: int, buf: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(buf).cast("B")
    chunk = 1 << 30
    done = 0
    while done < view.nbytes:
        n = os.pwrite(fd, view[done : done + chunk], offset + done)
        if n == 0:
            raise OSError(errno.ENOSPC, "no space left writing object")
        done += n


def map_object(paths: Sequence[str]) -> list[memoryview]:
    """Map the first existing path read-only; returns [pickle stream, *buffers] as memoryviews."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            size = os.fstat(fd).st_size
            # A shared lock, held as long as the mapping lives, tells the store not to recycle the file.
            fcntl.flock(fd, fcntl.LOCK_SH)
            mm = _Mapping(fd, size, access=mmap.ACCESS_READ)
        except BaseException:
            os.close(fd)
            raise
        mm.fd = fd
        view = memoryview(mm)
        data_len, count = _HEAD.unpack_from(view, 0)
        frames: list[memoryview] = []
        pos = _HEAD.size
        slots = []
        for _ in range(count):
            slots.append(_SLOT.unpack_from(view, pos))
            pos += _SLOT.size
        frames.append(view[pos : pos + data_len])
        for off, n in slots:
            frames.append(view[off : off + n])
        return frames
    raise ObjectNotFound(errno.ENOENT, "object file not found", paths[0] if paths else "")


class _Mapping(mmap.mmap):
    """A read-only mapping that keeps its file open (and share-locked) until the last view dies."""

    fd: int = -1

    def __del__(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def object_paths(shm_dir: str, spill_dir: str, oid_hex: str) -> tuple[str, str]:
    """Where an object lives: its shared-memory file first, then its spilled copy."""
    return os.path.join(shm_dir, oid_hex), os.path.join(spill_dir, oid_hex)
