"""kray's Kubernetes operator: reconciles RayCluster and RayJob custom resources (group kray.io, v1).

Importing the package does nothing; handlers register when `python -m kray_operator` runs.
"""
