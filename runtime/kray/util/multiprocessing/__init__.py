"""kray.util.multiprocessing: a drop-in for the standard library's `multiprocessing.Pool` whose
processes are kray actors, as `ray.util.multiprocessing`.

`JoinableQueue` and `TimeoutError` are the standard library's, re-exported as Ray does.
"""

from multiprocessing import JoinableQueue

from kray.util.multiprocessing.pool import AsyncResult, Pool, TimeoutError

__all__ = ["AsyncResult", "JoinableQueue", "Pool", "TimeoutError"]
