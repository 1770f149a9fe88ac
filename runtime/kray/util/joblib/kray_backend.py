"""KrayBackend: a joblib parallel backend whose workers are a kray.util.multiprocessing Pool of actors,
as Ray's `RayBackend` (n_jobs=-1 means every CPU of the cluster; `ray_remote_args` sizes the actors).

Imports joblib (an optional dependency) and the driver API; starts a local cluster when none is running.
"""

from __future__ import annotations

from typing import Any

from joblib._parallel_backends import (  # joblib's own mixins, as its process backends use them
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    PoolManagerMixin,
    SequentialBackend,
)

import kray
from kray.util.multiprocessing.pool import Pool

# What joblib's Parallel passes for its memmapping process pool. kray's object store already shares
# large numpy arrays between processes without copies, so these have nothing to tune here.
_MEMMAPPING_OPTIONS = ("max_nbytes", "temp_folder", "mmap_mode", "verbose", "prewarm",
                       "forward_reducers", "backward_reducers", "context_id")


class KrayBackend(PoolManagerMixin, AutoBatchingMixin, ParallelBackendBase):
    """Runs joblib's batches of calls on a pool of kray actors, one per job.

    `ray_remote_args` (given to `parallel_backend(...)` or to `Parallel(...)`, the latter winning) are
    the actors' `.options()`, e.g. `{"num_cpus": 2}` or `{"resources": {"special": 1}}`.
    """

    supports_retrieve_callback = True
    supports_return_generator = False  # as Ray's backend (joblib's multiprocessing one)

    def __init__(self, nesting_level: int | None = None, inner_max_num_threads: int | None = None,
                 ray_remote_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if ray_remote_args is not None and not isinstance(ray_remote_args, dict):
            raise TypeError(f"ray_remote_args must be a dict of actor options, got {ray_remote_args!r}.")
        self.ray_remote_args = ray_remote_args
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **kwargs)

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """`n_jobs` itself; a negative one counts back from the cluster's CPUs (-1: all of them)."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            if not kray.is_initialized():
                kray.init()
            cpus = int(kray.cluster_resources().get("CPU", 0))
            return max(cpus + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs: int | None = 1, parallel: Any = None, prefer: str | None = None,
                  require: str | None = None, ray_remote_args: dict[str, Any] | None = None,
                  **pool_args: Any) -> int:
        """Start the pool of `n_jobs` actors for one `Parallel` call; with one job, run in this process."""
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        options = {**getattr(self, "backend_kwargs", {}), **pool_args}  # joblib < 1.4 keeps none
        for name in _MEMMAPPING_OPTIONS:
            options.pop(name, None)
        remote_args = ray_remote_args if ray_remote_args is not None else self.ray_remote_args
        self._pool = Pool(n_jobs, ray_remote_args=remote_args, **options)
        self.parallel = parallel
        return n_jobs

    def terminate(self) -> None:
        """End the pool's actors; the next `Parallel` call starts new ones."""
        super().terminate()
        self.reset_batch_stats()
