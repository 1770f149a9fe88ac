"""Pod networking for the pod runner: a bridge, one network namespace + veth per pod, pod IPs from
100.64.0.0/16, and per-pod /etc/netns/<ns>/{hosts,resolv.conf}; or 127.0.0.N without namespaces.

Runs `ip` as root, creates and deletes links and namespaces, writes under /etc/netns and
/run/kray-podrunner (its registry, so a later run can remove what a killed run left behind).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
STATE_ROOT = Path("/run/kray-podrunner")
NETNS_ETC = Path("/etc/netns")
PREFIX = "kray-"


class NetworkError(RuntimeError):
    """A pod's network could not be set up."""


@dataclasses.dataclass
class Sandbox:
    """A pod's network: its IP and, in netns mode, its namespace name and host-side veth."""

    ip: str
    netns: str | None = None
    veth: str | None = None

    def exec_prefix(self) -> list[str]:
        """Prefix that runs a command inside this pod's network namespace (and its hosts file)."""
        return [shutil.which("ip") or "/usr/sbin/ip", "netns", "exec", self.netns] if self.netns else []


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def netns_available() -> bool:
    """Whether this process can make network namespaces (root with iproute2)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("unshare") is not None


def kill_netns_processes(netns: str) -> None:
    """SIGKILLs every process still inside a network namespace (daemons that left the process group)."""
    proc = _ip("netns", "pids", netns, check=False)
    for word in proc.stdout.split():
        try:
            os.kill(int(word), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


class NetnsNetwork:
    """A /24 of 100.64.0.0/16 on a bridge of its own; each pod gets a namespace, a veth and an IP."""

    mode = "netns"

    def __init__(self) -> None:
        self.token = secrets.token_hex(3)
        self.bridge = f"krb{self.token}"
        self.state_dir = STATE_ROOT / self.token
        self.subnet: ipaddress.IPv4Network | None = None
        self.host_ip = ""
        self._next = 2
        self._free: list[int] = []
        self._sandboxes: dict[str, Sandbox] = {}
        self._lock = threading.Lock()

    def setup(self) -> None:
        """Removes what dead runs left, then picks a free /24 and creates the bridge on it."""
        with _registry_lock():
            reap_stale()
            self.state_dir.mkdir()
            (self.state_dir / "owner").write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
            self.subnet = _free_subnet()
            self.host_ip = str(self.subnet.network_address + 1)
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.host_ip}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        log.info("pod runner: bridge %s on %s", self.bridge, self.subnet)

    def add_pod(self, key: str) -> Sandbox:
        """Creates a namespace with a veth on the bridge and the next free IP; `key` is namespace/name."""
        if self.subnet is None:
            raise NetworkError("setup() first")
        with self._lock:
            n = self._free.pop() if self._free else self._next
            if n == self._next:
                self._next += 1
            if n > 254:
                raise NetworkError(f"no pod IPs left in {self.subnet}")
        ip = str(self.subnet.network_address + n)
        netns, veth, peer = f"{PREFIX}{self.token}-{n}", f"krv{self.token}{n:02x}", f"krp{self.token}{n:02x}"
        sb = Sandbox(ip=ip, netns=netns, veth=veth)
        try:
            (NETNS_ETC / netns).mkdir(parents=True, exist_ok=True)
            _ip("netns", "add", netns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", netns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("-n", netns, "link", "set", peer, "name", "eth0")
            _ip("-n", netns, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "route", "add", "default", "via", self.host_ip)
        except NetworkError:
            self._remove(sb, n)
            raise
        with self._lock:
            self._sandboxes[key] = sb
        return sb

    def remove_pod(self, key: str) -> None:
        """Kills what is left in the pod's namespace and removes the namespace, veth and etc files."""
        with self._lock:
            sb = self._sandboxes.pop(key, None)
        if sb is not None and sb.netns:
            self._remove(sb, int(sb.netns.rsplit("-", 1)[1]))

    def _remove(self, sb: Sandbox, n: int) -> None:
        if sb.netns:
            kill_netns_processes(sb.netns)
            _ip("netns", "del", sb.netns, check=False)
            shutil.rmtree(NETNS_ETC / sb.netns, ignore_errors=True)
        if sb.veth:
            _ip("link", "del", sb.veth, check=False)
        with self._lock:
            self._free.append(n)

    def write_etc(self, sb: Sandbox, name: str, text: str) -> None:
        """Writes /etc/netns/<ns>/<name> in place, so a running pod's bind mount of it sees the change."""
        if not sb.netns:
            return
        path = NETNS_ETC / sb.netns / name
        if not path.exists():
            path.write_text(text)
            return
        with open(path, "r+") as f:
            if f.read() == text:
                return
            f.seek(0)
            f.truncate()
            f.write(text)

    def record_created(self, path: Path) -> None:
        """Notes a host path made for pods (a mount point), for reap_stale should this run be killed."""
        with self._lock, open(self.state_dir / "created", "a") as f:
            f.write(f"{path}\n")

    def teardown(self) -> None:
        """Removes every pod namespace, the bridge and the registry entry."""
        for key in list(self._sandboxes):
            self.remove_pod(key)
        _ip("link", "del", self.bridge, check=False)
        with _registry_lock():
            shutil.rmtree(self.state_dir, ignore_errors=True)
            _rmdir_if_empty(NETNS_ETC)
        _rmdir_if_empty(STATE_ROOT)


class LoopbackNetwork:
    """No namespaces: pods share the host's network and get 127.0.0.N addresses (no DNS names)."""

    mode = "loopback"

    def __init__(self) -> None:
        self.host_ip = "127.0.0.1"
        self._next = 2
        self._sandboxes: dict[str, Sandbox] = {}
        self._lock = threading.Lock()

    def setup(self) -> None:
        log.warning("pod runner: loopback mode: pods share the host network on 127.0.0.N "
                    "and Service names do not resolve")

    def add_pod(self, key: str) -> Sandbox:
        with self._lock:
            if self._next > 254:
                raise NetworkError("no loopback pod IPs left")
            sb = Sandbox(ip=f"127.0.0.{self._next}")
            self._next += 1
            self._sandboxes[key] = sb
        return sb

    def remove_pod(self, key: str) -> None:
        with self._lock:
            self._sandboxes.pop(key, None)

    def write_etc(self, sb: Sandbox, name: str, text: str) -> None:
        return None

    def record_created(self, path: Path) -> None:
        return None

    def teardown(self) -> None:
        self._sandboxes.clear()


Network = NetnsNetwork | LoopbackNetwork


def make_network(mode: str = "auto") -> Network:
    """`netns`, `loopback`, or `auto` (netns where this process may create namespaces)."""
    if mode == "netns" or (mode == "auto" and netns_available()):
        return NetnsNetwork()
    if mode in ("loopback", "auto"):
        return LoopbackNetwork()
    raise ValueError(f"unknown pod network mode {mode!r}")


def _free_subnet() -> ipaddress.IPv4Network:
    """The first 100.64.k.0/24 (then 100.65-127.k.0/24) that no address or route on the host overlaps."""
    used: list[ipaddress.IPv4Network] = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            used.append(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).network)
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word and word[0].isdigit():
            try:
                used.append(ipaddress.IPv4Network(word, strict=False))
            except ValueError:
                pass
    for second in range(64, 128):
        for third in range(16 if second == 64 else 0, 255):
            candidate = ipaddress.IPv4Network(f"100.{second}.{third}.0/24")
            if not any(candidate.overlaps(u) for u in used):
                return candidate
    raise NetworkError("no free /24 in 100.64.0.0/10 for pods")


def _owner_alive(state_dir: Path) -> bool:
    try:
        pid_text, start = (state_dir / "owner").read_text().split()
        stat = Path(f"/proc/{int(pid_text)}/stat").read_text().rsplit(")", 1)[1].split()
        return stat[0] != "Z" and stat[19] == start  # a killed owner lingers as a zombie until reaped
    except (OSError, ValueError, IndexError):
        return False


def reap_stale() -> None:
    """Removes namespaces, bridges and etc files of runs whose process is gone (killed test sessions)."""
    if not STATE_ROOT.is_dir():
        return
    listing = _ip("netns", "list", check=False).stdout.split()
    for state_dir in STATE_ROOT.iterdir():
        if not state_dir.is_dir() or _owner_alive(state_dir):
            continue
        token = state_dir.name
        for name in listing:
            if name.startswith(f"{PREFIX}{token}-"):
                kill_netns_processes(name)
                _ip("netns", "del", name, check=False)
                shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        _ip("link", "del", f"krb{token}", check=False)
        created = state_dir / "created"
        for line in reversed(created.read_text().splitlines() if created.exists() else []):
            _remove_if_empty(Path(line))
        shutil.rmtree(state_dir, ignore_errors=True)
        log.warning("pod runner: removed the leftovers of a dead run (%s)", token)
    _rmdir_if_empty(NETNS_ETC)


@contextlib.contextmanager
def _registry_lock() -> Iterator[None]:
    """An exclusive lock on the registry directory, so runs set up and reap one at a time."""
    for _ in range(10):
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(STATE_ROOT, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # another run removed the empty registry just now
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if STATE_ROOT.exists():
                yield
                return
        finally:
            os.close(fd)
    raise NetworkError(f"cannot lock {STATE_ROOT}")


def _remove_if_empty(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        elif path.is_file() and path.stat().st_size == 0:
            path.unlink()
    except OSError:
        pass


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
