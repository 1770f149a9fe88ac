"""kray.util.multiprocessing: a drop-in for the standard library's `multiprocessing.Pool` whose
processes are kray actors, as `ray.util.multiprocessing`.
"""

from kray.util.multiprocessing.pool import AsyncResult, Pool, TimeoutError

__all__ = ["AsyncResult", "Pool", "TimeoutError"]
