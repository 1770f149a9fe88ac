"""kray.util.joblib: run joblib's `Parallel` on a kray cluster, as Ray's `ray.util.joblib`.

`register_ray()` (Ray's name) registers the backend as "ray", `register_kray()` as "kray"; then
`with joblib.parallel_backend("ray"): ...` runs each batch of calls in a pool of kray actors.
Needs joblib (`pip install 'kray[joblib]'`); importing this module does not.
"""

from __future__ import annotations

__all__ = ["register_kray", "register_ray"]


def _register(name: str) -> None:
    try:
        from joblib.parallel import register_parallel_backend

        from kray.util.joblib.kray_backend import KrayBackend
    except ImportError as e:
        raise ImportError(f"The {name!r} joblib backend needs joblib, which is not installed ({e}). "
                          "Install it with `pip install joblib` (or `pip install 'kray[joblib]'`).") from e
    register_parallel_backend(name, KrayBackend)


def register_ray() -> None:
    """Register kray's joblib backend under Ray's name, for `joblib.parallel_backend("ray")`."""
    _register("ray")


def register_kray() -> None:
    """Register kray's joblib backend as "kray", for `joblib.parallel_backend("kray")`."""
    _register("kray")
