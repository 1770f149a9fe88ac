"""Pure manifest builders: RayCluster/RayJob models in, Pod/Service/Secret/Job/RayCluster dicts out.

Modules: names (names, labels, owner references), command (`kray start` argv), pods, service, secret,
observed (views of observed Pods), scaling (replica clamping, the worker diff), status, jobs.
Nothing here does I/O, reads the clock or draws random numbers: suffixes and times are passed in.
"""
