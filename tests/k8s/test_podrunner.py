"""The pod runner against the real control plane: pods run as processes with pod IPs, phases and
restarts are reported, Service names resolve, deletion kills and finalizes, Jobs complete, and env
and volumes are what the pod spec asks for. Starts processes and network namespaces via fixtures.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
import urllib.request
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from podrunner import PodRunner

pytestmark = pytest.mark.k8s


def _api(cls: Any, api: client.ApiClient) -> Any:
    """A kubernetes API group client, loosely typed: these tests pass manifests as plain dicts."""
    return cls(api)

HTTP_SERVER = textwrap.dedent("""
    import http.server, socketserver
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello from the pod"
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
    socketserver.TCPServer.allow_reuse_address = True
    socketserver.TCPServer(("0.0.0.0", 8080), H).serve_forever()
""")


def _pod(name: str, command: list[str], *, restart: str = "Never", labels: dict[str, str] | None = None,
         **container: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": restart, "terminationGracePeriodSeconds": 5,
                            "containers": [{"name": "main", "image": "kray:test", "command": command,
                                            **container}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": spec}


def _web_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return _pod(name, ["python3", "-c", HTTP_SERVER], restart="Always", labels=labels,
                ports=[{"name": "http", "containerPort": 8080}],
                readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1})


def _phase(*phases: str) -> Any:
    return lambda pod: pod is not None and pod.status.phase in phases


def _ready(pod: Any) -> bool:
    conditions = {c.type: c.status for c in (pod.status.conditions or [])} if pod else {}
    return conditions.get("Ready") == "True"


def test_a_pod_runs_with_a_pod_ip_reachable_from_the_host(pod_runner: PodRunner, kube_api: client.ApiClient,
                                                          k8s_namespace: str) -> None:
    core = _api(client.CoreV1Api, kube_api)
    core.create_namespaced_pod(k8s_namespace, _web_pod("web", {"app": "web"}))
    pod = pod_runner.wait_for_pod(k8s_namespace, "web", _ready, 30, "Ready")
    assert pod.spec.node_name == pod_runner.node_name
    assert pod.status.phase == "Running"
    if pod_runner.net.mode == "netns":
        assert pod.status.pod_ip.startswith("100.6")
    assert [ip.ip for ip in pod.status.pod_ips] == [pod.status.pod_ip]
    assert pod.status.host_ip == pod_runner.host_ip and pod.status.start_time is not None
    conditions = {c.type: c.status for c in pod.status.conditions}
    assert conditions == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True",
                          "Ready": "True"}
    (cs,) = pod.status.container_statuses
    assert cs.ready and cs.started and cs.restart_count == 0 and cs.state.running is not None
    with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/", timeout=10) as r:
        assert r.read() == b"hello from the pod"


def test_a_pod_that_exits_0_with_restart_never_succeeds(pod_runner: PodRunner, kube_api: client.ApiClient,
                                                        k8s_namespace: str) -> None:
    _api(client.CoreV1Api, kube_api).create_namespaced_pod(
        k8s_namespace, _pod("once", ["python3", "-c", "print('done here')"]))
    pod = pod_runner.wait_for_pod(k8s_namespace, "once", _phase("Succeeded", "Failed"), 30, "a final phase")
    assert pod.status.phase == "Succeeded"
    (cs,) = pod.status.container_statuses
    assert cs.state.terminated.exit_code == 0 and cs.state.terminated.reason == "Completed"
    assert not cs.ready
    assert "done here" in pod_runner.read_log(k8s_namespace, "once")


def test_a_failing_pod_with_restart_never_fails(pod_runner: PodRunner, kube_api: client.ApiClient,
                                                k8s_namespace: str) -> None:
    _api(client.CoreV1Api, kube_api).create_namespaced_pod(k8s_namespace, _pod("fails", ["sh", "-c", "exit 7"]))
    pod = pod_runner.wait_for_pod(k8s_namespace, "fails", _phase("Succeeded", "Failed"), 30, "a final phase")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 7


def test_restart_policy_always_restarts_an_exited_container(pod_runner: PodRunner, kube_api: client.ApiClient,
                                                            k8s_namespace: str) -> None:
    _api(client.CoreV1Api, kube_api).create_namespaced_pod(
        k8s_namespace, _pod("again", ["sh", "-c", "echo run; exit 3"], restart="Always"))

    def restarted_twice(pod: Any) -> bool:
        statuses = (pod.status.container_statuses if pod else None) or []
        return bool(statuses) and statuses[0].restart_count >= 2

    pod = pod_runner.wait_for_pod(k8s_namespace, "again", restarted_twice, 30, "restartCount >= 2")
    assert pod.status.phase == "Running"
    assert pod.status.container_statuses[0].last_state.terminated.exit_code == 3
    assert pod_runner.read_log(k8s_namespace, "again").count("run\n") >= 2


def test_a_service_name_resolves_to_the_ready_pod(pod_runner: PodRunner, kube_api: client.ApiClient,
                                                  k8s_namespace: str) -> None:
    core = _api(client.CoreV1Api, kube_api)
    core.create_namespaced_service(k8s_namespace, {"metadata": {"name": "head-svc"}, "spec": {
        "clusterIP": "None", "selector": {"app": "head"}, "ports": [{"name": "http", "port": 8080}]}})
    core.create_namespaced_pod(k8s_namespace, _web_pod("head", {"app": "head"}))
    head = pod_runner.wait_for_pod(k8s_namespace, "head", _ready, 30, "Ready")
    probe = textwrap.dedent(f"""
        import socket, urllib.request
        names = ["head-svc", "head-svc.{k8s_namespace}", "head-svc.{k8s_namespace}.svc",
                 "head-svc.{k8s_namespace}.svc.cluster.local"]
        print("IPS", [socket.gethostbyname(n) for n in names])
        print("BODY", urllib.request.urlopen("http://head-svc:8080/", timeout=10).read().decode())
    """)
    core.create_namespaced_pod(k8s_namespace, _pod("client", ["python3", "-c", probe]))
    pod = pod_runner.wait_for_pod(k8s_namespace, "client", _phase("Succeeded", "Failed"), 30, "a final phase")
    log = pod_runner.read_log(k8s_namespace, "client")
    assert pod.status.phase == "Succeeded", log
    assert f"IPS {[head.status.pod_ip] * 4}" in log
    assert "BODY hello from the pod" in log


def test_deleting_a_pod_kills_its_process_and_removes_it(pod_runner: PodRunner, kube_api: client.ApiClient,
                                                         k8s_namespace: str) -> None:
    core = _api(client.CoreV1Api, kube_api)
    core.create_namespaced_pod(k8s_namespace, _pod("doomed", ["sleep", "600"], restart="Always"))
    pod = pod_runner.wait_for_pod(k8s_namespace, "doomed", _phase("Running"), 30, "Running")
    pid = int(pod.status.container_statuses[0].container_id.removeprefix("kray://"))
    assert os.path.exists(f"/proc/{pid}")
    netns = pod_runner.netns_of(k8s_namespace, "doomed")
    core.delete_namespaced_pod("doomed", k8s_namespace)
    pod_runner.wait_for_pod(k8s_namespace, "doomed", lambda p: p is None, 20, "pod removed")
    assert not os.path.exists(f"/proc/{pid}"), f"pid {pid} outlived its pod"
    if pod_runner.net.mode == "netns":
        assert netns and netns not in pod_runner.sandboxes()
        listed = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True,
                                timeout=10).stdout
        assert netns not in listed.split(), f"network namespace {netns} outlived its pod"


def test_a_job_runs_to_completion(pod_runner: PodRunner, kube_api: client.ApiClient, k8s_namespace: str) -> None:
    batch = _api(client.BatchV1Api, kube_api)
    batch.create_namespaced_job(k8s_namespace, {"metadata": {"name": "compute"}, "spec": {
        "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "kray:test", "command": ["python3", "-c", "print(6 * 7)"]}]}}}})
    deadline = time.monotonic() + 45
    while (batch.read_namespaced_job_status("compute", k8s_namespace).status.succeeded or 0) < 1:
        assert time.monotonic() < deadline, "the Job did not complete in 45 s"
        time.sleep(0.3)
    pods = _api(client.CoreV1Api, kube_api).list_namespaced_pod(k8s_namespace, label_selector="job-name=compute").items
    assert [p.status.phase for p in pods] == ["Succeeded"]
    assert "42" in pod_runner.read_log(k8s_namespace, pods[0].metadata.name)


def test_env_sources_and_volumes_reach_the_process(pod_runner: PodRunner, kube_api: client.ApiClient,
                                                   k8s_namespace: str) -> None:
    if pod_runner.net.mode != "netns":
        pytest.skip("volume mounts need the mount namespaces of netns mode")
    core = _api(client.CoreV1Api, kube_api)
    core.create_namespaced_secret(k8s_namespace, {"metadata": {"name": "token"},
                                                  "stringData": {"token": "s3cret", "other": "x"}})
    core.create_namespaced_config_map(k8s_namespace, {"metadata": {"name": "settings"},
                                                      "data": {"LEVEL": "debug", "MODE": "fast"}})
    report = textwrap.dedent("""
        import json, os, socket
        st = os.statvfs("/dev/shm")
        print("REPORT " + json.dumps({
            "env": {k: os.environ.get(k) for k in ["POD_IP", "POD_NAME", "POD_NS", "TOKEN", "LEVEL",
                                                    "CFG_MODE", "GREETING"]},
            "secret_file": open("/etc/kray-test/secret/token").read(),
            "shm_bytes": st.f_blocks * st.f_frsize, "hostname": socket.gethostname()}))
    """)
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "token"}}},
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}}},
        {"name": "GREETING", "value": "hi $(POD_NAME)"},
    ]
    pod = _pod("envy", ["python3", "-c", report], env=env, envFrom=[{"prefix": "CFG_",
                                                                     "configMapRef": {"name": "settings"}}],
               volumeMounts=[{"name": "secret", "mountPath": "/etc/kray-test/secret", "readOnly": True},
                             {"name": "shm", "mountPath": "/dev/shm"}])
    pod["spec"]["volumes"] = [{"name": "secret", "secret": {"secretName": "token"}},
                              {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    core.create_namespaced_pod(k8s_namespace, pod)
    done = pod_runner.wait_for_pod(k8s_namespace, "envy", _phase("Succeeded", "Failed"), 30, "a final phase")
    log = pod_runner.read_log(k8s_namespace, "envy")
    assert done.status.phase == "Succeeded", log
    line = next(ln for ln in log.splitlines() if ln.startswith("REPORT "))
    got = json.loads(line.removeprefix("REPORT "))
    assert got["env"] == {"POD_IP": done.status.pod_ip, "POD_NAME": "envy", "POD_NS": k8s_namespace,
                          "TOKEN": "s3cret", "LEVEL": "debug", "CFG_MODE": "fast", "GREETING": "hi envy"}
    assert got["secret_file"] == "s3cret"
    assert got["shm_bytes"] == 64 * 1024 * 1024
    assert got["hostname"] == "envy"
    assert not os.path.exists("/etc/kray-test/secret/token")  # the host never sees the mount


def test_a_pod_waits_for_a_missing_secret(pod_runner: PodRunner, kube_api: client.ApiClient,
                                          k8s_namespace: str) -> None:
    core = _api(client.CoreV1Api, kube_api)
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    core.create_namespaced_pod(k8s_namespace, _pod("patient", ["sh", "-c", 'echo "got $TOKEN"'], env=env))

    def config_error(pod: Any) -> bool:
        statuses = pod.status.container_statuses if pod else None
        waiting = statuses[0].state.waiting if statuses else None
        return waiting is not None and waiting.reason == "CreateContainerConfigError"

    pod_runner.wait_for_pod(k8s_namespace, "patient", config_error, 20, "CreateContainerConfigError")
    core.create_namespaced_secret(k8s_namespace, {"metadata": {"name": "later"}, "stringData": {"token": "t"}})
    pod = pod_runner.wait_for_pod(k8s_namespace, "patient", _phase("Succeeded", "Failed"), 30, "a final phase")
    assert pod.status.phase == "Succeeded"
    assert "got t" in pod_runner.read_log(k8s_namespace, "patient")


def test_the_node_is_registered_and_ready(pod_runner: PodRunner, kube_api: client.ApiClient) -> None:
    node = _api(client.CoreV1Api, kube_api).read_node(pod_runner.node_name)
    conditions = {c.type: c.status for c in node.status.conditions}
    assert conditions["Ready"] == "True"
    try:
        _api(client.CoordinationV1Api, kube_api).read_namespaced_lease(pod_runner.node_name, "kube-node-lease")
    except ApiException as e:  # pragma: no cover - a failure message, not a branch
        pytest.fail(f"no node Lease: {e.reason}")


def test_init_containers_run_first_and_an_exec_probe_gates_ready(pod_runner: PodRunner,
                                                                 kube_api: client.ApiClient,
                                                                 k8s_namespace: str) -> None:
    mount = [{"name": "work", "mountPath": "/kray-test/work"}]
    script = "cat /kray-test/work/state; sleep 1; touch /kray-test/work/ready; exec sleep 600"
    pod = _pod("staged", ["sh", "-c", script],
               restart="Always", volumeMounts=mount,
               readinessProbe={"exec": {"command": ["test", "-f", "/kray-test/work/ready"]},
                               "periodSeconds": 1})
    pod["spec"]["initContainers"] = [{"name": "prepare", "image": "kray:test", "volumeMounts": mount,
                                      "command": ["sh", "-c", "echo prepared > /kray-test/work/state"]}]
    pod["spec"]["volumes"] = [{"name": "work", "emptyDir": {}}]
    _api(client.CoreV1Api, kube_api).create_namespaced_pod(k8s_namespace, pod)
    running = pod_runner.wait_for_pod(k8s_namespace, "staged", _phase("Running"), 30, "Running")
    (init,) = running.status.init_container_statuses
    assert init.state.terminated.exit_code == 0
    ready = pod_runner.wait_for_pod(k8s_namespace, "staged", _ready, 30, "Ready")
    assert ready.status.container_statuses[0].ready
    assert "prepared" in pod_runner.read_log(k8s_namespace, "staged", "main")


def test_loopback_mode_runs_pods_without_namespaces(control_plane: Any, kube_api: client.ApiClient,
                                                    k8s_namespace: str, tmp_path: Any) -> None:
    runner = PodRunner(control_plane.kubeconfig, tmp_path, node_name=f"loopback-{k8s_namespace[-4:]}",
                       namespace=k8s_namespace, network_mode="loopback").start()
    try:
        pod = _pod("plain", ["python3", "-c", "import os; print('IP', os.environ['POD_IP'])"],
                   env=[{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}])
        pod["spec"]["nodeName"] = runner.node_name  # so the session's runner leaves it alone
        _api(client.CoreV1Api, kube_api).create_namespaced_pod(k8s_namespace, pod)
        done = runner.wait_for_pod(k8s_namespace, "plain", _phase("Succeeded", "Failed"), 30, "a final phase")
        assert done.status.phase == "Succeeded"
        assert done.status.pod_ip.startswith("127.0.0.")
        assert f"IP {done.status.pod_ip}" in runner.read_log(k8s_namespace, "plain")
    finally:
        runner.stop()


def test_a_running_pod_sees_a_service_that_appears_later(pod_runner: PodRunner, kube_api: client.ApiClient,
                                                         k8s_namespace: str) -> None:
    # Workers start before their head is ready: the hosts file must change under a running pod.
    core = _api(client.CoreV1Api, kube_api)
    waiter = textwrap.dedent("""
        import socket, time
        deadline = time.monotonic() + 30
        while True:
            try:
                print("RESOLVED", socket.gethostbyname("late-svc"), flush=True)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    """)
    core.create_namespaced_pod(k8s_namespace, _pod("waiter", ["python3", "-c", waiter]))
    pod_runner.wait_for_pod(k8s_namespace, "waiter", _phase("Running"), 30, "Running")
    core.create_namespaced_pod(k8s_namespace, _web_pod("late", {"app": "late"}))
    core.create_namespaced_service(k8s_namespace, {"metadata": {"name": "late-svc"}, "spec": {
        "clusterIP": "None", "selector": {"app": "late"}, "ports": [{"port": 8080}]}})
    late = pod_runner.wait_for_pod(k8s_namespace, "late", _ready, 30, "Ready")
    done = pod_runner.wait_for_pod(k8s_namespace, "waiter", _phase("Succeeded", "Failed"), 40, "a final phase")
    log = pod_runner.read_log(k8s_namespace, "waiter")
    assert done.status.phase == "Succeeded", log
    assert f"RESOLVED {late.status.pod_ip}" in log


def test_exec_runs_in_the_containers_namespaces_with_its_env_and_a_private_tmpdir(
        pod_runner: PodRunner, kube_api: client.ApiClient, k8s_namespace: str) -> None:
    marker = f"kray-exec-{k8s_namespace}"
    _api(client.CoreV1Api, kube_api).create_namespaced_pod(k8s_namespace, _pod(
        "shell", ["sh", "-c", f'echo written-by-the-container > "$TMPDIR/{marker}"; exec sleep 600'],
        env=[{"name": "GREETING", "value": "hello"}]))
    pod = pod_runner.wait_for_pod(k8s_namespace, "shell", _phase("Running"), 30, "Running")
    done = pod_runner.exec(k8s_namespace, "shell",
                           ["sh", "-c", f'echo "$GREETING"; hostname; cat "$TMPDIR/{marker}"; echo "$TMPDIR"'],
                           timeout=30)
    assert done.returncode == 0, done.stderr
    greeting, hostname, written, tmpdir = done.stdout.split()
    assert (greeting, hostname, written) == ("hello", "shell", "written-by-the-container")
    assert tmpdir != "/tmp" and not os.path.exists(f"/tmp/{marker}"), "a container's temp dir is its own"
    if pod_runner.net.mode == "netns":
        ip = pod_runner.exec(k8s_namespace, "shell", ["hostname", "-i"], timeout=30)
        assert pod.status.pod_ip in ip.stdout.split(), ip.stdout
    failed = pod_runner.exec(k8s_namespace, "shell", ["sh", "-c", "exit 3"], timeout=30)
    assert failed.returncode == 3
    with pytest.raises(LookupError, match="no container 'sidecar'"):
        pod_runner.exec(k8s_namespace, "shell", ["true"], container="sidecar")


def test_a_failing_liveness_probe_restarts_the_container(pod_runner: PodRunner, kube_api: client.ApiClient,
                                                         k8s_namespace: str) -> None:
    core = _api(client.CoreV1Api, kube_api)
    core.create_namespaced_pod(k8s_namespace, _pod(
        "wilting", ["sh", "-c", 'touch "$TMPDIR/alive"; sleep 2; rm "$TMPDIR/alive"; exec sleep 600'],
        restart="Always",
        livenessProbe={"exec": {"command": ["sh", "-c", 'test -f "$TMPDIR/alive"']}, "periodSeconds": 1,
                       "failureThreshold": 2}))

    def restarted(pod: Any) -> bool:
        statuses = pod.status.container_statuses if pod is not None and pod.status else None
        return bool(statuses) and statuses[0].restart_count >= 1 and statuses[0].state.running is not None

    pod = pod_runner.wait_for_pod(k8s_namespace, "wilting", restarted, 60, "a restart after failed liveness probes")
    (cs,) = pod.status.container_statuses
    assert cs.last_state.terminated is not None and cs.last_state.terminated.exit_code != 0
    assert pod.status.phase == "Running"
