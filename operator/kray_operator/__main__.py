"""`python -m kray_operator`: run the kray operator (kopf) with kubectl-like flags.

Parses argv, registers the handlers and blocks in kopf's event loop until SIGINT/SIGTERM.
Credentials: in-cluster ServiceAccount, else $KUBECONFIG / ~/.kube/config.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import kopf


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: peering mode, namespaces, liveness endpoint, verbosity."""
    parser = argparse.ArgumentParser(
        prog="python -m kray_operator",
        description="The kray operator: reconciles RayCluster resources (kray.io/v1) into Pods and Services.",
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument("--standalone", action="store_true",
                         help="run alone, without peering with other operator replicas (the default)")
    peering.add_argument("--peering", metavar="NAME", default=None,
                         help="coordinate with other replicas through the KopfPeering object NAME")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch RayClusters in every namespace (the default)")
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch only this namespace; repeat for more (globs like 'team-*' work)")
    parser.add_argument("--liveness", metavar="URL", default=None,
                        help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors")
    parser.add_argument("--debug", action="store_true", help="log everything, including API traffic")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the operator until it is told to stop; returns the exit status."""
    args = parse_args(argv)
    kopf.configure(verbose=args.verbose, quiet=args.quiet, debug=args.debug)
    from kray_operator import handlers  # noqa: F401 - importing registers the handlers with kopf

    kopf.run(
        standalone=args.peering is None,
        peering_name=args.peering,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
