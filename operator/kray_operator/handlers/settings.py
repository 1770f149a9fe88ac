"""kopf settings of the operator, applied at startup: where kopf keeps its own bookkeeping, timeouts;
and the operator's own settings from its environment (the cluster DNS domain).

Touches only kopf's settings object and reads environment variables; no other I/O.
"""

from __future__ import annotations

import os
import re
from typing import Any

import kopf

from kray_operator import models
from kray_operator.builders import names

# kopf's progress and last-handled spec live in annotations under kray.io/: the CRD's structural schema
# prunes status fields it does not declare, so kopf's default `status.kopf` storage would be dropped.
ANNOTATION_PREFIX = models.GROUP
FINALIZER = f"{models.GROUP}/finalizer"
WATCH_SERVER_TIMEOUT_S = 300
WATCH_CLIENT_TIMEOUT_S = 330
REQUEST_TIMEOUT_S = 30.0
MAX_WORKERS = 8
TIMER_EXIT_WAIT_S = 0.5
TIMER_EXIT_POLL_S = 1.0

CLUSTER_DOMAIN_ENV = "KRAY_CLUSTER_DOMAIN"
_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_cluster_domain(domain: str) -> str:
    """`domain` when it is a DNS name such as cluster.local; else ValueError naming it."""
    if not _DOMAIN.match(domain) or len(domain) > 253:
        raise ValueError(f"cluster domain {domain!r} is not a DNS name such as cluster.local "
                         f"(set --cluster-domain or ${CLUSTER_DOMAIN_ENV})")
    return domain


def cluster_domain() -> str:
    """The cluster's DNS domain for service FQDNs (<svc>.<ns>.svc.<domain>): ${KRAY_CLUSTER_DOMAIN},
    else cluster.local (as KubeRay's CLUSTER_DOMAIN)."""
    return check_cluster_domain(os.environ.get(CLUSTER_DOMAIN_ENV) or names.DEFAULT_CLUSTER_DOMAIN)


def apply(settings: kopf.OperatorSettings) -> None:
    """Configure `settings` for kray: annotation storage, watch and request timeouts, a small thread pool."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = FINALIZER
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_S
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_S
    settings.networking.request_timeout = REQUEST_TIMEOUT_S
    settings.execution.max_workers = MAX_WORKERS
    # A deleted RayJob keeps its finalizer until its resync timer has stopped: check often (kopf polls
    # every 60 s by default, which would hold every RayJob deletion for a minute).
    settings.background.instant_exit_timeout = TIMER_EXIT_WAIT_S
    settings.background.cancellation_polling = TIMER_EXIT_POLL_S


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """kopf startup hook: apply kray's settings before any resource is watched."""
    apply(settings)
