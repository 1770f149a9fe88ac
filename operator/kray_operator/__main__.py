"""`python -m kray_operator`: run the kray operator (kopf) with kubectl-like flags.

Parses argv, optionally waits to be elected leader (a Lease), registers the handlers and blocks in
kopf's event loop until SIGINT/SIGTERM. Credentials: in-cluster ServiceAccount, else $KUBECONFIG /
~/.kube/config (credentials.py, for kopf and kube.py alike). While it waits as a standby, it answers the liveness URL itself.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import logging
import os
import socket
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Sequence

# `lean` imports kopf and the handlers without the kubernetes client: nothing before it may import kopf.
from kray_operator import leader, lean, metrics
from kray_operator.builders import names
from kray_operator.handlers import requeue, settings

log = logging.getLogger("kray_operator")
NAMESPACE_ENV = "KRAY_OPERATOR_NAMESPACE"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: namespaces, leader election, liveness endpoint, verbosity."""
    parser = argparse.ArgumentParser(
        prog="python -m kray_operator",
        description="The kray operator: reconciles RayCluster resources (kray.io/v1) into Pods and Services.",
    )
    parser.add_argument("--standalone", action="store_true",
                        help="accepted for kopf compatibility; kray replicas coordinate with --leader-elect")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch RayClusters in every namespace (the default)")
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch only this namespace; repeat for more (globs like 'team-*' work)")
    election = parser.add_argument_group("leader election (for several replicas)")
    election.add_argument("--leader-elect", action="store_true",
                          help="reconcile only while holding a Lease; other replicas wait as standbys")
    election.add_argument("--leader-election-namespace", metavar="NS", default=None,
                          help=f"namespace of the Lease (default: ${NAMESPACE_ENV}, else 'default')")
    election.add_argument("--leader-election-id", metavar="NAME", default="kray-operator",
                          help="name of the Lease (default: kray-operator)")
    election.add_argument("--lease-duration", type=float, default=15.0, metavar="S",
                          help="seconds a standby waits after the last renewal before taking over (15)")
    election.add_argument("--renew-deadline", type=float, default=10.0, metavar="S",
                          help="seconds the leader may fail to renew before it stops (10)")
    election.add_argument("--retry-period", type=float, default=2.0, metavar="S",
                          help="seconds between attempts to take or renew the Lease (2)")
    parser.add_argument("--liveness", metavar="URL", default=None,
                        help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--metrics", metavar="URL", default=None,
                        help="serve Prometheus metrics, e.g. http://0.0.0.0:8081/metrics")
    parser.add_argument("--cluster-domain", metavar="DOMAIN", default=None,
                        help=f"DNS domain of the cluster in service addresses (default: ${settings.CLUSTER_DOMAIN_ENV}, "
                             f"else {names.DEFAULT_CLUSTER_DOMAIN})")
    retry = parser.add_argument_group("retries of failed passes and periodic resync")
    retry.add_argument("--retry-base-delay", type=float, default=requeue.BASE_DELAY_S, metavar="S",
                       help=f"first delay before a failed pass is retried; doubles per failure ({requeue.BASE_DELAY_S:g})")
    retry.add_argument("--retry-max-delay", type=float, default=requeue.MAX_DELAY_S, metavar="S",
                       help=f"longest delay between retries of a failed pass ({requeue.MAX_DELAY_S:g})")
    retry.add_argument("--resync-period", type=float, default=requeue.RESYNC_S, metavar="S",
                       help=f"seconds between passes of every RayCluster even without events ({requeue.RESYNC_S:g})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors")
    parser.add_argument("--debug", action="store_true", help="log everything, including API traffic")
    args = parser.parse_args(argv)
    try:
        args.backoff = requeue.Backoff(args.retry_base_delay, args.retry_max_delay)
        if args.resync_period <= 0:
            raise ValueError(f"--resync-period must be positive, not {args.resync_period:g}")
        if args.cluster_domain is not None:
            settings.check_cluster_domain(args.cluster_domain)
    except ValueError as e:
        parser.error(str(e))
    if args.leader_elect:
        try:
            args.election = election_config(args)
        except ValueError as e:
            parser.error(str(e))
    return args


def election_config(args: argparse.Namespace) -> leader.ElectionConfig:
    """The Lease this replica competes for; its identity is the Pod's hostname plus a pid."""
    namespace = args.leader_election_namespace or os.environ.get(NAMESPACE_ENV) or "default"
    return leader.ElectionConfig(
        namespace=namespace, name=args.leader_election_id, identity=f"{socket.gethostname()}_{os.getpid()}",
        lease_duration_s=args.lease_duration, renew_deadline_s=args.renew_deadline,
        retry_period_s=args.retry_period,
    )


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"standby": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def standby_health(url: str | None) -> Iterator[None]:
    """Answer the liveness URL while this replica waits for the Lease (kopf serves it once it runs)."""
    if not url:
        yield
        return
    parts = urllib.parse.urlsplit(url)
    server = http.server.ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port or 80), _Healthy)
    thread = threading.Thread(target=server.serve_forever, name="standby health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _lost(reason: str) -> None:
    log.error("leader election: leadership lost (%s); exiting so that no two replicas reconcile", reason)
    logging.shutdown()
    os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the operator until it is told to stop; returns the exit status."""
    args = parse_args(argv)
    kopf = lean.kopf
    kopf.configure(verbose=args.verbose, quiet=args.quiet, debug=args.debug)
    if args.cluster_domain is not None:
        os.environ[settings.CLUSTER_DOMAIN_ENV] = args.cluster_domain  # read by handlers.settings
    from kray_operator.handlers import raycluster  # registered with kopf when `lean` was imported

    raycluster.configure(args.backoff, args.resync_period)
    if args.metrics:
        metrics.serve(args.metrics)
    elector = leader.Elector(args.election, _lost) if args.leader_elect else None
    if elector is not None:
        with standby_health(args.liveness):
            elector.acquire()
        elector.keep()
    metrics.leading()
    try:
        kopf.run(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness,
        )
    finally:
        if elector is not None:
            elector.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
