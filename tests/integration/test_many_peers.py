"""More than zmq's default 1,023 sockets per context, under a 1,024 open-files soft limit (issue 18: 5,000
live actors from one driver need a socket each in the driver).

1,100 actors would prove it too, but cost 1,100 interpreters; here the driver's own core worker (after
`kray.init()`, in a process started with `ulimit -Sn 1024`) connects to 1,100 peers served by one
process (kray's loop, 1,100 ROUTER sockets, same cluster token), gets an answer from each through the
same `connect`/request path its actor calls use, and then still runs a task and an actor call. Before
the fix the 1,024th socket failed with "Too many open files" in both processes.

Starts a local cluster and a peer process in a subprocess of its own.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

PEERS = 1100
LOW_SOFT_LIMIT = 1024

_PEER = textwrap.dedent("""
    import os, sys, threading
    from kray.protocol import debug_messages, loop, wire
    import zmq

    wire.set_token(os.environ["PEER_TOKEN"] or None)
    server = loop.Loop(name="peers")
    endpoints = []
    for index in range(int(sys.argv[1])):
        sock = wire.make_socket(server.ctx, zmq.ROUTER)
        endpoints.append(wire.bind_random(sock, "127.0.0.1"))
        server.serve(sock)
    server.on(debug_messages.GetTableSizes, lambda msg, payload, peer: peer.reply(msg.req_id, {"pid": os.getpid()}))
    threading.Thread(target=server.run, daemon=True).start()
    print(" ".join(endpoints), flush=True)
    sys.stdin.read(1)  # served until the driver closes this pipe
""")

_DRIVER = textwrap.dedent("""
    import os, resource, subprocess, sys
    import kray
    from kray.core import refs
    from kray.protocol import debug_messages, wire

    print("soft limit at start", resource.getrlimit(resource.RLIMIT_NOFILE)[0], flush=True)
    kray.init(num_cpus=1)

    @kray.remote
    def double(x):
        return 2 * x

    @kray.remote(num_cpus=0)
    class Echo:
        def echo(self, x):
            return x

    peer = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PEER_TOKEN": wire.get_token() or ""})
    try:
        endpoints = peer.stdout.readline().split()
        assert len(endpoints) == int(sys.argv[2]), f"the peer process served {len(endpoints)} endpoints"
        core = refs.get_core()
        pids = {core.call(ep, lambda rid: debug_messages.GetTableSizes(rid), timeout=120)["pid"] for ep in endpoints}
        assert pids == {peer.pid}, pids
        print("connections", len(core.loop._peers), flush=True)
        assert kray.get(double.remote(21), timeout=120) == 42
        assert kray.get(Echo.remote().echo.remote("still answering"), timeout=120) == "still answering"
    finally:
        peer.stdin.close()
        peer.wait(60)
    print("soft limit now", resource.getrlimit(resource.RLIMIT_NOFILE)[0], flush=True)
    kray.shutdown()
    print("ok", flush=True)
""")


def _low_soft_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, hard))


def test_a_driver_holds_more_than_1023_peer_sockets_under_a_1024_file_soft_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard == resource.RLIM_INFINITY or hard >= 4 * PEERS, (
        f"this machine's hard open-files limit ({hard}) is too low for this test; raise it (ulimit -Hn)")
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, _PEER, str(PEERS)], capture_output=True, text=True, timeout=600,
        preexec_fn=_low_soft_limit, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    lines = done.stdout.splitlines()
    assert f"soft limit at start {LOW_SOFT_LIMIT}" in lines, output
    connections = int(next(line for line in lines if line.startswith("connections ")).split()[1])
    assert connections > PEERS, output  # the peers, plus the GCS and the raylet
    assert lines[-1] == "ok", output
