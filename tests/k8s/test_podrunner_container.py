"""The pod runner's container mode against the real control plane: pods run from the runtime image with
podman in their network namespace, with env, volumes, /dev/shm, limits, probes, image entrypoint/cmd,
restarts and cleanup as Kubernetes gives them. Starts containers, namespaces and HTTP calls via fixtures.
"""

from __future__ import annotations

import json
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from image_support import Images, on_container_node
from kubernetes import client
from podrunner import PodRunner, podman

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(900)]

TIMEOUT_S = 60.0
# Everything this pod reports is read inside the container: the image's Python, its user and files.
REPORT = textwrap.dedent("""
    import http.server, json, os, socket, sys, pathlib
    import numpy, pandas
    def read(path):
        try:
            return pathlib.Path(path).read_text().strip()
        except OSError as e:
            return f"error: {e}"
    shm = os.statvfs("/dev/shm")
    pathlib.Path("/data/written").write_text("by uid %d" % os.getuid())
    report = {
        "python": sys.executable, "uid": os.getuid(), "cwd": os.getcwd(), "argv": sys.argv[1:],
        "hostname": socket.gethostname(), "numpy": numpy.__version__, "pandas": pandas.__version__,
        "env": {k: os.environ.get(k) for k in ("GREETING", "POD_IP", "POD_NAME", "TOKEN", "MODE", "PATH")},
        "files": {p: read(p) for p in ("/etc/cfg/mode", "/etc/sec/token", "/etc/podinfo/name",
                                         "/data/written")},
        "shm_bytes": shm.f_blocks * shm.f_frsize,
        "memory_limit": read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
        "cpu_quota": read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
        "resolves": socket.gethostbyname("web-svc"),
    }
    print("REPORT " + json.dumps(report), flush=True)
    pathlib.Path("/tmp/kray-container-ready").touch()
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello from the image"
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
""")


def _core(api: client.ApiClient) -> Any:
    return client.CoreV1Api(api)  # loosely typed: manifests are plain dicts here


def _pod(name: str, image: str, restart: str = "Never", labels: dict[str, str] | None = None,
         volumes: list[dict[str, Any]] | None = None, **container: Any) -> dict[str, Any]:
    spec = {"restartPolicy": restart, "terminationGracePeriodSeconds": 2, "volumes": volumes or [],
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never", **container}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": on_container_node(spec)}


def _phase(*phases: str) -> Any:
    return lambda pod: pod is not None and pod.status.phase in phases


def _ready(pod: Any) -> bool:
    return pod is not None and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _report(runner: PodRunner, namespace: str, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        lines = [ln for ln in runner.read_log(namespace, name).splitlines() if ln.startswith("REPORT ")]
        if lines:
            report: dict[str, Any] = json.loads(lines[-1].removeprefix("REPORT "))
            return report
        time.sleep(0.2)
    raise AssertionError(f"no REPORT from {name}:\n{runner.read_log(namespace, name)[-3000:]}")


def _say(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\ncontainer mode: {line}")


def test_a_pod_runs_from_the_image_with_its_env_volumes_limits_and_probes(
        container_pod_runner: PodRunner, kray_images: Images, kube_api: client.ApiClient, k8s_namespace: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    runner, core, ns = container_pod_runner, _core(kube_api), k8s_namespace
    core.create_namespaced_secret(ns, {"metadata": {"name": "token"}, "stringData": {"token": "s3cret"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"}, "data": {"mode": "fast"}})
    core.create_namespaced_service(ns, {"metadata": {"name": "web-svc"}, "spec": {
        "clusterIP": "None", "selector": {"app": "web"}, "publishNotReadyAddresses": True,
        "ports": [{"name": "http", "port": 8080}]}})
    env = [{"name": "GREETING", "value": "hello"},
           {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "token"}}},
           {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}]
    volumes = [{"name": "cfg", "configMap": {"name": "settings"}}, {"name": "sec", "secret": {"secretName": "token"}},
               {"name": "podinfo", "downwardAPI": {"items": [{"path": "name",
                                                              "fieldRef": {"fieldPath": "metadata.name"}}]}},
               {"name": "data", "emptyDir": {}}, {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    mounts = [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "sec", "mountPath": "/etc/sec", "readOnly": True},
              {"name": "podinfo", "mountPath": "/etc/podinfo"}, {"name": "data", "mountPath": "/data"},
              {"name": "shm", "mountPath": "/dev/shm"}]
    created = time.monotonic()
    core.create_namespaced_pod(ns, _pod(
        "web", kray_images.runtime, restart="Always", labels={"app": "web"}, volumes=volumes, env=env,
        volumeMounts=mounts, command=["python3", "-c", REPORT], args=["$(GREETING)-expanded"], workingDir="/data",
        ports=[{"name": "http", "containerPort": 8080}],
        resources={"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "250m", "memory": "128Mi"}},
        readinessProbe={"exec": {"command": ["test", "-f", "/tmp/kray-container-ready"]}, "periodSeconds": 1},
        livenessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1, "failureThreshold": 3}))
    running = runner.wait_for_pod(ns, "web", _phase("Running"), TIMEOUT_S, "Running")
    to_running = time.monotonic() - created
    pod = runner.wait_for_pod(ns, "web", _ready, TIMEOUT_S, "Ready (its exec probe runs inside the container)")
    _say(capsys, f"pod created -> Running {to_running:.2f} s, -> Ready {time.monotonic() - created:.2f} s")
    assert pod.spec.node_name == runner.node_name and running.status.pod_ip == pod.status.pod_ip
    assert not Path("/tmp/kray-container-ready").exists(), "the probe's file is in the container, not on the host"

    got = _report(runner, ns, "web")
    assert got["python"] == "/opt/kray/venv/bin/python3" and got["uid"] == 1000, "the image's Python and user"
    assert got["cwd"] == "/data" and got["argv"] == ["hello-expanded"] and got["hostname"] == "web"
    assert got["numpy"] and got["pandas"]
    assert got["env"] == {"GREETING": "hello", "POD_IP": pod.status.pod_ip, "POD_NAME": "web", "TOKEN": "s3cret",
                          "MODE": "fast", "PATH": got["env"]["PATH"]}
    assert got["env"]["PATH"].startswith("/opt/kray/venv/bin:"), "PATH comes from the image"
    assert got["files"] == {"/etc/cfg/mode": "fast", "/etc/sec/token": "s3cret", "/etc/podinfo/name": "web",
                            "/data/written": "by uid 1000"}
    assert got["shm_bytes"] == 64 << 20, "/dev/shm is the memory emptyDir's sizeLimit"
    assert got["memory_limit"] == str(256 << 20) and got["cpu_quota"] == "50000", "limits are cgroup limits"
    assert got["resolves"] == pod.status.pod_ip, "the Service name resolves in the container"
    with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/", timeout=10) as r:
        assert r.read() == b"hello from the image"

    (listed,) = podman.containers(ns, "web")
    assert listed["Image"] == kray_images.runtime and listed["State"] == "running"
    done = runner.exec(ns, "web", ["sh", "-c", "echo $MODE $(id -u) $PWD; cat /tmp/kray-container-ready && echo ok"])
    assert done.returncode == 0 and done.stdout.split() == ["fast", "1000", "/data", "ok"], done
    _say(capsys, f"web pod memory (cgroup): {podman.memory_usage_bytes(listed['Names'][0]) / 2**20:.1f} MiB")

    core.delete_namespaced_pod("web", ns)
    runner.wait_for_pod(ns, "web", lambda p: p is None, TIMEOUT_S, "deleted")
    assert podman.containers(ns, "web") == [], "deleting the pod removes its container"
    assert podman.podman("ps", "--all", "--filter", f"name={listed['Names'][0]}", "--format",
                         "{{.Names}}").stdout.strip() == ""


def test_without_command_the_image_entrypoint_and_cmd_run(container_pod_runner: PodRunner, kray_images: Images,
                                                          kube_api: client.ApiClient, k8s_namespace: str) -> None:
    runner, core, ns = container_pod_runner, _core(kube_api), k8s_namespace
    core.create_namespaced_pod(ns, _pod("cmd", kray_images.runtime))  # the image's CMD: kray --help
    core.create_namespaced_pod(ns, _pod("args", kray_images.runtime, args=["python3", "-c", "print('ARGS ran')"]))
    # The operator image has an ENTRYPOINT (python -m kray_operator): args replace only its CMD.
    core.create_namespaced_pod(ns, _pod("entry", kray_images.operator, args=["--help"]))
    for name, expected in (("cmd", "Usage: kray"), ("args", "ARGS ran"), ("entry", "--standalone")):
        pod = runner.wait_for_pod(ns, name, _phase("Succeeded", "Failed"), TIMEOUT_S, "a final phase")
        log = runner.read_log(ns, name)
        assert pod.status.phase == "Succeeded" and expected in log, f"{name}: {pod.status.phase}\n{log[-2000:]}"
        assert podman.containers(ns, name) == []


def test_restarts_keep_the_emptydir_and_an_oom_kill_fails_the_pod(container_pod_runner: PodRunner,
                                                                  kray_images: Images, kube_api: client.ApiClient,
                                                                  k8s_namespace: str) -> None:
    runner, core, ns = container_pod_runner, _core(kube_api), k8s_namespace
    once = "test -f /data/once && echo second run && exit 0; touch /data/once; echo first run; exit 3"
    core.create_namespaced_pod(ns, _pod("once", kray_images.runtime, restart="OnFailure", command=["sh", "-c", once],
                                        volumes=[{"name": "data", "emptyDir": {}}],
                                        volumeMounts=[{"name": "data", "mountPath": "/data"}]))
    hog = "x = bytearray(300 << 20); print('not killed')"
    core.create_namespaced_pod(ns, _pod("hog", kray_images.runtime, command=["python3", "-c", hog],
                                        resources={"limits": {"memory": "96Mi"}}))
    core.create_namespaced_pod(ns, _pod("absent", "localhost/kray-absent:never"))

    pod = runner.wait_for_pod(ns, "once", _phase("Succeeded", "Failed"), TIMEOUT_S, "a final phase")
    (cs,) = pod.status.container_statuses
    assert pod.status.phase == "Succeeded" and cs.restart_count == 1, runner.read_log(ns, "once")
    assert cs.last_state.terminated.exit_code == 3
    assert runner.read_log(ns, "once").count("run\n") == 2

    pod = runner.wait_for_pod(ns, "hog", _phase("Succeeded", "Failed"), TIMEOUT_S, "a final phase")
    assert pod.status.phase == "Failed", runner.read_log(ns, "hog")
    assert pod.status.container_statuses[0].state.terminated.exit_code == 137, "killed at its memory limit"

    def never_pulled(p: Any) -> bool:
        statuses = (p.status.container_statuses if p else None) or []
        return bool(statuses) and statuses[0].state.waiting is not None \
            and statuses[0].state.waiting.reason == "ErrImageNeverPull"

    runner.wait_for_pod(ns, "absent", never_pulled, TIMEOUT_S, "waiting with ErrImageNeverPull")


def test_init_containers_run_first_and_a_failing_exec_liveness_probe_restarts_the_container(
        container_pod_runner: PodRunner, kray_images: Images, kube_api: client.ApiClient, k8s_namespace: str) -> None:
    runner, core, ns = container_pod_runner, _core(kube_api), k8s_namespace
    pod = _pod("lively", kray_images.runtime, restart="Always", volumes=[{"name": "data", "emptyDir": {}}],
               command=["sh", "-c", "cat /data/from-init; touch /tmp/alive; sleep 2; rm /tmp/alive; exec sleep 600"],
               volumeMounts=[{"name": "data", "mountPath": "/data"}],
               livenessProbe={"exec": {"command": ["test", "-f", "/tmp/alive"]}, "initialDelaySeconds": 1,
                              "periodSeconds": 1, "failureThreshold": 2})
    pod["spec"]["initContainers"] = [{"name": "init", "image": kray_images.runtime, "imagePullPolicy": "Never",
                                      "command": ["sh", "-c", "echo written by init as $(id -u) > /data/from-init"],
                                      "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]
    core.create_namespaced_pod(ns, pod)

    def restarted(p: Any) -> bool:
        statuses = (p.status.container_statuses if p else None) or []
        return bool(statuses) and statuses[0].restart_count >= 1

    got = runner.wait_for_pod(ns, "lively", restarted, TIMEOUT_S, "restarted by its liveness probe")
    (init,) = got.status.init_container_statuses
    assert init.state.terminated.exit_code == 0
    assert got.status.container_statuses[0].last_state.terminated is not None
    deadline = time.monotonic() + TIMEOUT_S
    while runner.read_log(ns, "lively", "main").count("written by init as 1000") < 2:  # each run reads it
        assert time.monotonic() < deadline, runner.read_log(ns, "lively", "main")
        time.sleep(0.2)
