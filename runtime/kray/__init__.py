"""kray: a Ray-compatible distributed computing runtime for Python, native to Kubernetes.

The public API, re-exported; nothing else lives here. The names load on first use (PEP 562), so that the
GCS and raylet processes, which import `kray.gcs` / `kray.raylet` and never the API, do not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kray import actor, dag, exceptions  # noqa: F401 - ray.actor and ray.dag after `import ray`
    from kray.api.actor import ActorHandle, get_actor, kill, method
    from kray.api.context import (
        available_resources,
        cluster_resources,
        get_gpu_ids,
        get_runtime_context,
        nodes,
    )
    from kray.api.objects import cancel, get, put, wait
    from kray.api.remote_function import remote
    from kray.api.runtime import init, is_initialized, shutdown
    from kray.core.generators import DynamicObjectRefGenerator, ObjectRefGenerator
    from kray.core.refs import ObjectRef
    from kray.util.state_timeline import driver_timeline as timeline

__version__ = "0.1.0"

# public name -> (module, attribute); `actor`, `dag`, `exceptions` and every other `kray.X` submodule load
# as attributes too (Ray programs reach ray.actor, ray.dag, ray.util after `import ray`).
_EXPORTS: dict[str, tuple[str, str]] = {
    **{name: ("kray.api.actor", name) for name in ("ActorHandle", "get_actor", "kill", "method")},
    **{name: ("kray.api.context", name) for name in (
        "available_resources", "cluster_resources", "get_gpu_ids", "get_runtime_context", "nodes")},
    **{name: ("kray.api.objects", name) for name in ("cancel", "get", "put", "wait")},
    "remote": ("kray.api.remote_function", "remote"),
    **{name: ("kray.api.runtime", name) for name in ("init", "is_initialized", "shutdown")},
    **{name: ("kray.core.generators", name) for name in ("DynamicObjectRefGenerator", "ObjectRefGenerator")},
    "ObjectRef": ("kray.core.refs", "ObjectRef"),
    "timeline": ("kray.util.state_timeline", "driver_timeline"),
}

__all__ = [
    "ActorHandle",
    "DynamicObjectRefGenerator",
    "ObjectRef",
    "ObjectRefGenerator",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "wait",
]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is not None:
        value = getattr(importlib.import_module(target[0]), target[1])
    elif name.startswith("__"):
        raise AttributeError(f"module 'kray' has no attribute {name!r}")
    else:
        try:
            value = importlib.import_module(f"kray.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"kray.{name}":
                raise
            raise AttributeError(f"module 'kray' has no attribute {name!r}") from None
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, "actor", "dag", "exceptions"})
