"""The pod runner: a kubelet stand-in that runs pods as local processes in network namespaces.

Test support for tests/k8s only. `PodRunner` (runner.py) is the entry point; the other modules are
its rooms: dns and status are pure, podspec/volumes compute a container's env and mounts, network
and container touch the host (namespaces, veths, processes), worker runs one pod.
"""

from .runner import PodRunner

__all__ = ["PodRunner"]
