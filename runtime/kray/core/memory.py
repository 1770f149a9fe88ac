"""Give freed heap memory back to the system after a large burst of objects was dropped.

CPython frees small objects into its own arenas and glibc's malloc keeps freed pages in its heap, so a
process that held a million ObjectRefs keeps most of that memory after they are gone. `give_back` asks
glibc to return free pages (malloc_trim). It costs a few milliseconds for a large heap, so callers use
it only after dropping a large table (object_table.ObjectTable compacts and then calls it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

_trim = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
    _trim.argtypes = [ctypes.c_size_t]
    _trim.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc (musl, macOS): the allocator keeps what it keeps
    _trim = None


def give_back() -> None:
    """Collect cycles, then return the heap's free pages to the system where the C library can."""
    gc.collect()
    if _trim is not None:
        try:
            _trim(0)
        except OSError as e:
            log.debug("malloc_trim failed: %s", e)
