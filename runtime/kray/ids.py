"""Identifiers of jobs, nodes, workers, tasks and objects, as bytes with a hex form.

Pure: no I/O beyond os.urandom. An ObjectID is its task's 16-byte TaskID plus a 4-byte index
(returns count from 1, puts use a separate counter with the high bit set), as in Ray.
"""

from __future__ import annotations

import itertools
import os
import struct

TASK_ID_SIZE = 16
OBJECT_ID_SIZE = TASK_ID_SIZE + 4
_PUT_BIT = 1 << 31
_INDEX = struct.Struct(">I")


def random_id(n: int = 16) -> bytes:
    return os.urandom(n)


class TaskIdFactory:
    """Cheap unique task ids for one process: an 8-byte random prefix and an 8-byte counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8)
        self._counter = itertools.count(1)

    def next(self) -> bytes:
        return self._prefix + next(self._counter).to_bytes(8, "big")


def return_object_id(task_id: bytes, index: int) -> bytes:
    """The id of the index-th (1-based) return of a task."""
    return task_id + _INDEX.pack(index)


def put_object_id(task_id: bytes, put_index: int) -> bytes:
    return task_id + _INDEX.pack(_PUT_BIT | put_index)


def task_of(object_id: bytes) -> bytes:
    return object_id[:TASK_ID_SIZE]


def job_id_hex(job_number: int) -> str:
    """Ray prints job ids as 4 little-endian bytes in hex: job 1 -> '01000000'."""
    return job_number.to_bytes(4, "little").hex()
