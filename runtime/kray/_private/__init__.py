"""`ray._private` under kray: only the names Ray's and KubeRay's documentation have programs call from it
(`ray._private.services.get_node_ip_address()`, `ray._private.internal_api.free()` and `memory_summary()`,
`ray._private.utils.get_system_memory()`/`get_used_memory()`). kray's own code never imports this package.
"""

from kray._private import internal_api, services, utils

__all__ = ["internal_api", "services", "utils"]
