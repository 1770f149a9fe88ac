"""`request_resources`, as Ray's `ray.autoscaler.sdk.request_resources`: ask the autoscaler to keep
capacity for these bundles at once, whatever runs; the request stands until the next call replaces it.

Writes the request to the GCS key-value store, where the head's demand report reads it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from kray.api import runtime
from kray.protocol import messages

# The GCS KV key the head reports under "resource_requests" (runtime/kray/gcs/autoscaling.py).
RESOURCE_REQUEST_KEY = "__autoscaler_resource_request"

__all__ = ["request_resources"]


def _bundles(num_cpus: int | None, bundles: Sequence[Mapping[str, float]] | None) -> list[dict[str, float]]:
    if num_cpus is not None and (not isinstance(num_cpus, int) or isinstance(num_cpus, bool) or num_cpus < 0):
        raise TypeError(f"num_cpus must be a non-negative int, got {num_cpus!r}")
    out: list[dict[str, float]] = [{"CPU": 1.0}] * (num_cpus or 0)
    for bundle in bundles or []:
        if not isinstance(bundle, Mapping) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in bundle.values()):
            raise TypeError(f"each bundle must be a dict of non-negative numbers, got {bundle!r}")
        out.append({str(k): float(v) for k, v in bundle.items()})
    return out


def request_resources(num_cpus: int | None = None, bundles: Sequence[Mapping[str, float]] | None = None) -> None:
    """Keep the cluster big enough for `num_cpus` 1-CPU bundles plus `bundles` (e.g. `[{"GPU": 1}] * 2`),
    counted against the cluster's total capacity, not its free capacity, until the next call.

    `request_resources()` (or `num_cpus=0`) clears the request, letting idle nodes go.
    """
    payload = json.dumps(_bundles(num_cpus, bundles)).encode()
    core = runtime.current_core()
    core.call(core.gcs_address, lambda rid: messages.KvPut(rid, RESOURCE_REQUEST_KEY, payload))
