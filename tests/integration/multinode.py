"""A multi-node kray cluster on loopback addresses, started with the real `kray start` CLI.

Starts `kray start`/`kray stop` subprocesses, signals the processes they started, reads their address
files and /proc, removes a killed node's /dev/shm entries. Each node has an IP of its own (127.0.0.1
is the head, then 127.0.0.2, 127.0.0.3, ...) and a KRAY_TEMP_DIR of its own, so `kray stop` with that
directory stops that node only, as it would on a machine of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from . import helpers

# Every process of a node carries this variable (kray start passes its environment to the GCS and the
# raylet, and the raylet to its workers), so a node's processes are found even after they are orphaned.
MARKER_ENV = "KRAY_TEST_MULTINODE_NODE"
ADDRESS_FILE_NAME = "kray_current_cluster"
CLI_TIMEOUT_S = 120.0


def kray_cli() -> list[str]:
    """The `kray` command of the interpreter running the tests."""
    beside = Path(sys.executable).parent / "kray"
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", "from kray.cli.main import main; main()"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _environ(proc: psutil.Process) -> dict[str, str] | None:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def marked_processes(prefix: str) -> list[psutil.Process]:
    """Live processes whose MARKER_ENV value starts with `prefix`."""
    found = []
    for proc in psutil.process_iter():
        env = _environ(proc)
        if env is not None and env.get(MARKER_ENV, "").startswith(prefix):
            found.append(proc)
    return found


@dataclasses.dataclass
class Node:
    """One simulated machine: its IP, its KRAY_TEMP_DIR and what `kray start` recorded there."""

    index: int
    ip: str
    temp_dir: Path
    marker: str
    num_cpus: float
    resources: dict[str, float]
    start_output: str = ""
    session_dir: str = ""
    pids: list[int] = dataclasses.field(default_factory=list)
    killed: bool = False
    stopped: bool = False

    @property
    def session_name(self) -> str:
        return os.path.basename(self.session_dir)

    def address_file(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.temp_dir / ADDRESS_FILE_NAME).read_text())
        except (OSError, ValueError):
            return None

    def shm_entries(self) -> list[Path]:
        """This node's /dev/shm/kray-<session>-<node> entries."""
        if not self.session_name:
            return []
        return sorted(helpers.SHM_ROOT.glob(f"{helpers.SHM_PREFIX}{self.session_name}*"))

    def holds(self, object_hex: str) -> bool:
        """Whether this node's object store has a file (in shared memory or spilled) of that object."""
        spill_root = Path(self.session_dir, "spill") if self.session_dir else None
        return any((entry / object_hex).exists() for entry in self.shm_entries()) or bool(
            spill_root and spill_root.exists() and any(spill_root.glob(f"*/{object_hex}"))
        )

    def processes(self) -> list[psutil.Process]:
        """This node's live kray processes (GCS, raylet, workers), orphaned or not."""
        return marked_processes(self.marker)


class MultiNodeCluster:
    """A head on 127.0.0.1 and worker nodes on 127.0.0.2, 127.0.0.3, ..., each started by `kray start`.

    `extra_env` goes to every node's processes (e.g. {"KRAY_NODE_TIMEOUT_S": "3"}). `teardown()` runs
    `kray stop` for every node, then fails if a process it started or a /dev/shm entry of its sessions
    is left (after cleaning them up, so one failing test does not poison the next).
    """

    def __init__(
        self, base_dir: Path, *, num_cpus: float = 1, resources: list[dict[str, float] | None] | None = None,
        num_nodes: int = 3, extra_env: dict[str, str] | None = None, object_store_memory: int = 1536 * helpers.MiB,
    ) -> None:
        self.base_dir = base_dir
        self.num_cpus = num_cpus
        self.initial_resources = list(resources or [])
        self.num_nodes = num_nodes
        self.extra_env = dict(extra_env or {})
        self.object_store_memory = object_store_memory
        self.cluster_id = uuid.uuid4().hex[:12]
        self.nodes: list[Node] = []
        self.port = 0
        self.token = ""
        self.torn_down = False
        self.left_processes = 0
        self.left_shm = 0

    # --- addresses ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """HOST:PORT of the head's GCS, as `kray.init(address=...)` takes it."""
        return f"127.0.0.1:{self.port}"

    def ip_of(self, index: int) -> str:
        return f"127.0.0.{index + 1}"

    # --- starting ----------------------------------------------------------------------------

    def start(self) -> MultiNodeCluster:
        try:
            for i in range(self.num_nodes):
                res = self.initial_resources[i] if i < len(self.initial_resources) else None
                self.add_node(resources=res)
        except BaseException:
            self.teardown(check=False)
            raise
        return self

    def node_env(self, node: Node, token: str | None) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("KRAY_CLUSTER_TOKEN", "KRAY_ADDRESS", "RAY_ADDRESS", "KRAY_NODE_IP"):
            env.pop(name, None)
        env.update(self.extra_env)
        env["KRAY_TEMP_DIR"] = str(node.temp_dir)
        env[MARKER_ENV] = node.marker
        env["PYTHONPATH"] = os.pathsep.join(p for p in (helpers.package_root(), env.get("PYTHONPATH")) if p)
        if token is not None:
            env["KRAY_CLUSTER_TOKEN"] = token
        return env

    def _new_node(self, num_cpus: float | None, resources: dict[str, float] | None, ip: str | None) -> Node:
        index = len(self.nodes)
        temp_dir = self.base_dir / f"node{index + 1}"
        temp_dir.mkdir(parents=True, exist_ok=True)
        return Node(
            index=index, ip=ip or self.ip_of(index), temp_dir=temp_dir, marker=f"{self.cluster_id}:{index}:",
            num_cpus=self.num_cpus if num_cpus is None else num_cpus, resources=dict(resources or {}),
        )

    def start_args(self, node: Node) -> list[str]:
        args = ["start", f"--node-ip-address={node.ip}", f"--num-cpus={node.num_cpus:g}",
                f"--object-store-memory={self.object_store_memory}"]
        if node.resources:
            args.append("--resources=" + json.dumps(node.resources))
        if node.index == 0:
            self.port = free_port()
            args += ["--head", f"--port={self.port}", f"--dashboard-port={free_port()}",
                     f"--metrics-export-port={free_port()}"]
        else:
            args.append(f"--address={self.address}")
        return args

    def run_cli(self, args: list[str], env: dict[str, str], timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*kray_cli(), *args], check=False, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, cwd=self.base_dir,
        )

    def add_node(
        self, *, num_cpus: float | None = None, resources: dict[str, float] | None = None, ip: str | None = None,
    ) -> Node:
        """Start one more node (the first one is the head) and wait until the head lists it."""
        node = self._new_node(num_cpus, resources, ip)
        self.nodes.append(node)
        head = node.index == 0
        result = self.run_cli(self.start_args(node), self.node_env(node, None if head else self.token))
        node.start_output = result.stdout + result.stderr
        recorded = node.address_file()
        if recorded:
            node.session_dir = str(recorded.get("session_dir", ""))
            node.pids = [int(p) for p in recorded.get("pids", [])]
        if result.returncode != 0:
            raise AssertionError(
                f"`kray {' '.join(self.start_args_for_display(node))}` failed (rc={result.returncode}):\n"
                f"{node.start_output}"
            )
        if head:
            match = re.search(r'KRAY_CLUSTER_TOKEN="\$\(cat (\S+)\)" kray start --address=\'?([\d.]+:\d+)',
                              node.start_output)
            if not match:
                raise AssertionError(f"`kray start --head` printed no join line:\n{node.start_output}")
            token_file = Path(match.group(1))
            if oct(token_file.stat().st_mode & 0o777) != oct(0o600):
                raise AssertionError(f"the token file {token_file} is readable by others")
            self.token = token_file.read_text()
            if self.token in node.start_output:
                raise AssertionError("`kray start --head` printed the cluster token")
            if match.group(2) != self.address:
                raise AssertionError(f"the join line names {match.group(2)}, not {self.address}")
            if not recorded or recorded.get("token") != self.token:
                raise AssertionError(f"the head's address file does not hold the printed token: {recorded}")
        if not recorded or not node.pids:
            raise AssertionError(f"`kray start` wrote no address file in {node.temp_dir}:\n{node.start_output}")
        return node

    def start_args_for_display(self, node: Node) -> list[str]:
        return ["start", f"--node-ip-address={node.ip}", *(["--head"] if node.index == 0 else [f"--address={self.address}"])]

    # --- failures ----------------------------------------------------------------------------

    def kill_node(self, index: int, timeout: float = helpers.WAIT_S) -> None:
        """SIGKILL every process of node `index` at once (its raylet's process group and its workers'),
        as if the machine lost power, then drop its /dev/shm entries, which would vanish with it."""
        node = self.nodes[index]
        family = node.processes()
        if not family:
            raise AssertionError(f"node {index} ({node.ip}) has no running process to kill")
        for proc in family:
            try:
                proc.suspend()  # freeze them all first: no process sees another die and reacts
            except psutil.NoSuchProcess:
                pass
        for proc in family:
            try:
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.kill()
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
        node.killed = True
        # A dead machine runs no `kray stop`; and its recorded pids may soon belong to other processes.
        node.stopped = True
        helpers.wait_until(lambda: not node.processes(), timeout, f"node {index}'s processes to die")
        for entry in node.shm_entries():
            shutil.rmtree(entry, ignore_errors=True)

    def try_join(self, token: str | None, ip: str) -> subprocess.CompletedProcess:
        """Run `kray start --address` for a node that is not recorded as part of the cluster (for refusals)."""
        node = Node(index=-1, ip=ip, temp_dir=self.base_dir / f"refused-{uuid.uuid4().hex[:6]}",
                    marker=f"{self.cluster_id}:refused:", num_cpus=1, resources={})
        node.temp_dir.mkdir(parents=True)
        args = ["start", f"--address={self.address}", f"--node-ip-address={ip}", "--num-cpus=1",
                f"--object-store-memory={self.object_store_memory}"]
        env = self.node_env(node, token)
        env["KRAY_START_TIMEOUT_S"] = "20"
        return self.run_cli(args, env)

    def stop_node(self, index: int) -> subprocess.CompletedProcess:
        """`kray stop` with node `index`'s KRAY_TEMP_DIR (stops that node's processes only)."""
        node = self.nodes[index]
        node.stopped = True
        return self.run_cli(["stop"], self.node_env(node, None))

    # --- teardown ----------------------------------------------------------------------------

    def processes(self) -> list[psutil.Process]:
        return marked_processes(self.cluster_id + ":")

    def shm_entries(self) -> list[Path]:
        return [entry for node in self.nodes for entry in node.shm_entries()]

    def teardown(self, timeout: float = helpers.WAIT_S, check: bool = True) -> None:
        """`kray stop` on every node (workers first, the head last), then check nothing is left
        (what was left is counted in `left_processes` and `left_shm` before it is cleaned up)."""
        if self.torn_down:
            return
        self.torn_down = True
        problems: list[str] = []
        for node in reversed(self.nodes):
            if node.stopped:
                continue
            node.stopped = True
            try:
                result = self.run_cli(["stop"], self.node_env(node, None), timeout=60)
            except subprocess.TimeoutExpired:
                problems.append(f"`kray stop` for node {node.index} ({node.ip}) did not return within 60s")
                continue
            if result.returncode != 0:
                problems.append(f"`kray stop` for node {node.index} failed (rc={result.returncode}): "
                                f"{result.stdout}{result.stderr}")
        deadline = time.monotonic() + timeout
        while (self.processes() or self.shm_entries()) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = self.processes()
        self.left_processes = len(left)
        if left:
            problems.append(f"processes left after `kray stop`: {helpers.describe(left)}")
            for proc in left:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
        shm_left = self.shm_entries()
        self.left_shm = len(shm_left)
        if shm_left:
            problems.append(f"/dev/shm entries left after `kray stop`: {[str(p) for p in shm_left]}")
            for entry in shm_left:
                shutil.rmtree(entry, ignore_errors=True)
        if problems and check:
            raise AssertionError("; ".join(problems))

    def logs(self, index: int, tail: int = 40) -> str:
        """The last lines of node `index`'s raylet (and GCS) logs, for failure messages."""
        node = self.nodes[index]
        out = []
        for path in sorted(Path(node.session_dir, "logs").glob("*")) if node.session_dir else []:
            try:
                lines = path.read_text(errors="replace").splitlines()[-tail:]
            except OSError:
                continue
            if lines:
                out.append(f"--- {path.name} ---\n" + "\n".join(lines))
        return "\n".join(out)


@contextlib.contextmanager
def running(base_dir: Path, **kwargs: Any) -> Iterator[MultiNodeCluster]:
    """A started MultiNodeCluster(base_dir, **kwargs), torn down (and leak-checked) on exit."""
    cluster = MultiNodeCluster(base_dir, **kwargs).start()
    try:
        yield cluster
    finally:
        cluster.teardown()
