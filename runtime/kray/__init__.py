"""kray: a Ray-compatible distributed computing runtime for Python, native to Kubernetes.

The public API, re-exported; nothing else lives here.
"""

from kray import actor, dag, exceptions  # noqa: F401 - Ray programs reach ray.actor and ray.dag after `import ray`
from kray.api.actor import ActorHandle, get_actor, kill, method
from kray.api.context import available_resources, cluster_resources, get_gpu_ids, get_runtime_context, nodes
from kray.api.objects import cancel, get, put, wait
from kray.api.remote_function import remote
from kray.api.runtime import init, is_initialized, shutdown
from kray.core.generators import DynamicObjectRefGenerator, ObjectRefGenerator
from kray.core.refs import ObjectRef

__version__ = "0.1.0"

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
    "wait",
]
