"""What of a KubeRay manifest kray accepts without acting on it: one line per field, for Warning Events.

Fields kray refuses are not here (the CRD or the models reject them with an error naming them); fields
kray honours are not here either. Pure: a spec in, lines out; no I/O.
"""

from __future__ import annotations

from kray_operator import models
from kray_operator.builders import command, names

# Reason of the Events that carry these lines.
REASON = "NoEffectOnKray"
# autoscalerOptions fields that are about kray's own autoscaling policy, not KubeRay's sidecar container.
HONOURED_AUTOSCALER = frozenset({"idleTimeoutSeconds", "upscalingMode"})


def _start_params(spec: models.RayClusterSpec) -> list[str]:
    groups = [(names.HEAD_GROUP, spec.head_group_spec.ray_start_params)]
    groups += [(g.group_name, g.ray_start_params) for g in spec.worker_group_specs]
    lines = []
    for group, params in groups:
        ignored = command.ignored_params(params)
        if ignored:
            lines.append(
                f"rayStartParams {ignored} of group {group!r} have no effect on kray and are left out of "
                "`kray start`"
            )
    return lines


def notices(spec: models.RayClusterSpec) -> list[str]:
    """One line per accepted field that has no effect on kray, naming the field and why."""
    lines = _start_params(spec)
    if spec.auth_options is not None and spec.auth_options.mode == models.AuthMode.DISABLED:
        lines.append(
            "authOptions.mode disabled: RAY_AUTH_MODE and RAY_AUTH_TOKEN are not set, but kray's own "
            "processes still authenticate with the cluster token in the Secret "
            "<cluster>-token (kray cannot run without it)"
        )
    if spec.autoscaler_options is not None:
        given = spec.autoscaler_options.model_dump(by_alias=True, exclude_unset=True).keys()
        sidecar = sorted(given - HONOURED_AUTOSCALER)
        if sidecar:
            lines.append(
                f"autoscalerOptions {sidecar} have no effect: kray's autoscaler runs in the operator, not as a "
                "sidecar container, so it needs no image, command, resources, env or version"
            )
        policy = sorted(given & HONOURED_AUTOSCALER)
        if policy and not spec.enable_in_tree_autoscaling:
            lines.append(f"autoscalerOptions {policy} have no effect without enableInTreeAutoscaling: true")
    if spec.gcs_fault_tolerance_options is not None:
        lines.append(
            "gcsFaultToleranceOptions has no effect: kray keeps no GCS state outside the head, so a restarted "
            "head starts an empty cluster that the workers rejoin"
        )
    if spec.head_group_spec.enable_ingress:
        lines.append("headGroupSpec.enableIngress has no effect: kray does not create an Ingress yet")
    return lines
