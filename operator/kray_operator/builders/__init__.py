"""Pure manifest builders: RayCluster/RayJob models in, Pod/Service/Secret/Job/RayCluster dicts out.

Modules: names (names, labels, owner references), command (the `kray start` line), pods, service, secret,
observed (views of observed Pods), scaling (replica clamping, the worker diff), status, compat (KubeRay
fields without effect on kray), jobs.
Pure: no I/O, no clock, no randomness; suffixes, tokens and times are passed in.
"""
