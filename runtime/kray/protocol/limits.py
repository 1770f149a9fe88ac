"""zmq contexts sized for thousands of peers, and the file descriptors they need.

libzmq caps a context at 1,023 sockets by default, and many systems start a process with 1,024 open
files: a driver with one DEALER per actor (each socket holds a mailbox fd and a TCP connection) stopped
near 1,000 actors. Every process that keeps a socket per peer (drivers and core workers, the raylet,
the GCS) builds its context with `context()`, which first raises this process's soft RLIMIT_NOFILE to its
hard limit (as Ray's processes do) and then lets the context hold as many sockets as those files allow.
"""

from __future__ import annotations

import logging

import zmq

log = logging.getLogger(__name__)

# Files a peer costs: the socket's mailbox (an eventfd), its TCP connection, and (measured on a driver
# with 40 actors) the peer's own connection back to this process's ROUTER.
FDS_PER_SOCKET = 3
# Files kept aside for everything else a process opens (logs, pipes, shared memory, pidfds).
RESERVED_FDS = 256
ZMQ_DEFAULT_MAX_SOCKETS = 1023

_raised: int | None = None


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (once per process); returns the soft limit now."""
    global _raised
    if _raised is not None:
        return _raised
    try:
        import resource
    except ImportError:  # not a POSIX system
        _raised = 1024
        return _raised
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    target = 1 << 20 if hard == unlimited else hard  # Linux refuses more than fs.nr_open (1,048,576 by default)
    if soft != unlimited and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, e)
    _raised = target if soft == unlimited else int(soft)
    return _raised


def max_sockets(open_files: int, socket_limit: int) -> int:
    """How many sockets a context may hold in a process allowed `open_files` files: never fewer than
    zmq's default, never more than the library's own `socket_limit`."""
    by_files = (open_files - RESERVED_FDS) // FDS_PER_SOCKET
    return max(ZMQ_DEFAULT_MAX_SOCKETS, min(socket_limit, by_files))


def context() -> zmq.Context:
    """A new zmq context whose socket cap follows this process's (raised) open-files limit."""
    open_files = raise_open_files_limit()
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, max_sockets(open_files, ctx.get(zmq.SOCKET_LIMIT)))
    return ctx
