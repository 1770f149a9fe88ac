"""Leader election of operator replicas over a coordination.k8s.io/v1 Lease, as Kubernetes controllers do:
the replica holding the Lease reconciles; the others wait for it to lapse; a holder that cannot renew in
time stops (its process exits, so two replicas never reconcile at once).

`claim` is pure (a Lease in, the Lease to write out); `Elector` talks to the API through kube.py and runs
one renew thread. Expiry is judged by this process's monotonic clock from when it last saw the record
change, never by comparing the holder's timestamps with our clock (clocks of nodes differ).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kray_operator import kube

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ElectionConfig:
    """Where the Lease lives, who we are, and the timings (client-go's defaults: 15 s, 10 s, 2 s)."""

    namespace: str
    name: str
    identity: str
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError("leader election needs retry period < renew deadline < lease duration "
                             f"(got {self.retry_period_s:g} s, {self.renew_deadline_s:g} s, {self.lease_duration_s:g} s)")


def micro_time(now: datetime.datetime) -> str:
    """A Lease's MicroTime ("2026-01-02T03:04:05.123456Z")."""
    return now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim(lease: dict[str, Any] | None, config: ElectionConfig, expired: bool,
          now: datetime.datetime) -> dict[str, Any] | None:
    """The Lease to write to hold (or keep holding) leadership, or None when another live holder has it.

    `lease` is the stored object (None: there is none yet); `expired` says whether its record has gone
    unrenewed for a whole lease duration as this process observed it.
    """
    spec = dict((lease or {}).get("spec") or {})
    holder = spec.get("holderIdentity") or ""
    mine = holder == config.identity
    if holder and not mine and not expired:
        return None
    stamp = micro_time(now)
    if not mine:
        spec["acquireTime"] = stamp
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
    spec.update({"holderIdentity": config.identity, "renewTime": stamp,
                 "leaseDurationSeconds": max(1, round(config.lease_duration_s))})
    metadata: dict[str, Any] = {"name": config.name, "namespace": config.namespace}
    if lease is not None:
        metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]  # optimistic concurrency
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


class Elector:
    """Acquires and keeps the Lease of `config`; `lost` is called (once) when leadership is lost."""

    def __init__(self, config: ElectionConfig, lost: Callable[[str], None]) -> None:
        self.config = config
        self._lost = lost
        self._observed: tuple[Any, Any] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _expired(self, lease: dict[str, Any] | None) -> bool:
        spec = (lease or {}).get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"))
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration_s)
        return now - self._observed_at > duration

    def try_once(self) -> bool:
        """One attempt to take or renew the Lease; True when we hold it now."""
        cfg = self.config
        try:
            lease = kube.read_lease(cfg.namespace, cfg.name)
            wanted = claim(lease, cfg, self._expired(lease), datetime.datetime.now(datetime.timezone.utc))
            if wanted is None:
                return False
            if lease is None:
                kube.create_lease(cfg.namespace, wanted)
            else:
                kube.replace_lease(cfg.namespace, cfg.name, wanted)
        except (kube.ConflictError, kube.AlreadyExistsError):
            return False  # another replica wrote first; look again next round
        except kube.KubeError as e:
            log.warning("leader election: %s", e)
            return False
        self._renewed_at = time.monotonic()
        return True

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until this replica holds the Lease (True), or `stop` is set (False)."""
        stop = stop or self._stop
        announced = False
        while not stop.is_set():
            if self.try_once():
                log.info("leader election: %s leads (Lease %s/%s)", self.config.identity, self.config.namespace,
                         self.config.name)
                return True
            if not announced:
                log.info("leader election: waiting for Lease %s/%s, held by another replica",
                         self.config.namespace, self.config.name)
                announced = True
            stop.wait(self.config.retry_period_s)
        return False

    def keep(self) -> None:
        """Renew the Lease every retry period on a thread; past the renew deadline, call `lost`."""
        self._renewed_at = time.monotonic()
        self._thread = threading.Thread(target=self._renew_loop, name="leader election", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.config.retry_period_s):
            if self.try_once():
                continue
            if time.monotonic() - self._renewed_at > self.config.renew_deadline_s:
                self._lost(f"the Lease {self.config.namespace}/{self.config.name} was not renewed for "
                           f"{self.config.renew_deadline_s:g} s")
                return

    def release(self) -> None:
        """Stop renewing and hand the Lease over at once (a standby need not wait for it to lapse)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.retry_period_s + kube.REQUEST_TIMEOUT_S)
        cfg = self.config
        try:
            lease = kube.read_lease(cfg.namespace, cfg.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != cfg.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["leaseDurationSeconds"] = 1
            kube.replace_lease(cfg.namespace, cfg.name, lease)
        except kube.KubeError as e:
            log.warning("leader election: could not release the Lease: %s", e)
