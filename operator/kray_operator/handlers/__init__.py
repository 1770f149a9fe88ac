"""kopf handlers of the operator, thin: read the resource, call builders and policies, apply through kube.py.

Importing this package registers every handler with kopf's default registry (no I/O at import time).
"""

from kray_operator.handlers import raycluster, rayjob, settings

__all__ = ["raycluster", "rayjob", "settings"]
