"""kray.experimental: Ray's experimental helpers that programs import (tqdm_ray).

Ray Direct Transport (`ray.experimental.register_tensor_transport`, TensorTransportManager, ...: objects kept
in the producing actor and moved by a tensor transport) is not implemented: importing its names raises an
ImportError that says so, and `@kray.method(tensor_transport=...)` takes only "object_store".
"""

_DIRECT_TRANSPORT = frozenset({
    "CommunicatorMetadata", "RDTManager", "TensorTransportManager", "TensorTransportMetadata",
    "deregister_nixl_memory", "register_nixl_memory", "register_nixl_memory_pool", "register_tensor_transport",
    "set_nixl_cuda_stream", "set_target_device_for_ref", "set_target_for_ref", "wait_tensor_freed",
})


def __getattr__(name: str) -> object:
    if name in _DIRECT_TRANSPORT:
        raise ImportError(
            f"kray.experimental.{name} belongs to Ray Direct Transport (tensor transports), which kray does not "
            "implement: objects travel through the object store (tensor_transport='object_store' only).",
            name=f"kray.experimental.{name}")
    raise AttributeError(f"module 'kray.experimental' has no attribute {name!r}")
