"""`JobSubmissionClient`: Ray's job SDK over the head's HTTP API (submit, status, logs, stop, delete).

Makes HTTP requests (urllib; aiohttp's websocket for `tail_job_logs`) and reads the local address
file to find this machine's cluster and its token.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

from kray.jobs.records import JobDetails, JobStatus

TIMEOUT_S = 30.0


def _resolve(address: str | None) -> tuple[str, str | None]:
    """The job API's base URL for `address` (Ray's rules), and the cluster token to send, if known."""
    from kray.api import local_cluster

    address = (address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("KRAY_ADDRESS")
               or os.environ.get("RAY_ADDRESS") or "auto")
    token = os.environ.get("KRAY_CLUSTER_TOKEN") or os.environ.get("RAY_AUTH_TOKEN") or None
    local = local_cluster.read_live_address() or {}
    if address in ("auto", "local"):
        if not local.get("dashboard_url"):
            raise ConnectionError(
                "Could not find a running kray cluster with a job server on this machine. Start one with "
                "`kray start --head`, or pass the job server's address, e.g. http://HEAD:8265 (or set "
                "RAY_ADDRESS).")
        return "http://" + local["dashboard_url"], token or local.get("token")
    address = address.rstrip("/")
    if address.startswith(("http://", "https://")):
        mine = local.get("dashboard_url") and address.split("://", 1)[1] == local["dashboard_url"]
        return address, token or (local.get("token") if mine else None)
    if address.startswith(("ray://", "kray://")):
        address = address.split("://", 1)[1]
    # A GCS address (HOST:PORT): this machine's cluster knows its job server; elsewhere Ray's default port.
    gcs = "tcp://" + (address if ":" in address else address + ":6379")
    if local.get("gcs_address") == gcs and local.get("dashboard_url"):
        return "http://" + local["dashboard_url"], token or local.get("token")
    return f"http://{address.rsplit(':', 1)[0]}:8265", token


def _token_of_this_process() -> str | None:
    """The token of the cluster this process is a driver or worker of, if any."""
    from kray.protocol import wire

    return wire.get_token()


class JobSubmissionClient:
    """Submit and manage jobs on a kray cluster, as Ray's `ray.job_submission.JobSubmissionClient`.

    address: the job server (`http://HEAD:8265`), a GCS address, or None/"auto" for this machine's
    cluster (then RAY_API_SERVER_ADDRESS, KRAY_ADDRESS or RAY_ADDRESS when set). The cluster token comes
    from KRAY_CLUSTER_TOKEN (or RAY_AUTH_TOKEN), or from this machine's cluster record.
    """

    def __init__(self, address: str | None = None, create_cluster_if_needed: bool = False,
                 cookies: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
                 headers: dict[str, Any] | None = None, verify: str | bool | None = True,
                 **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"JobSubmissionClient got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        if create_cluster_if_needed:
            raise ValueError("create_cluster_if_needed is not supported by kray: start a cluster with "
                             "`kray start --head` (or `kray up cluster.yaml` on Kubernetes) first.")
        if verify is not True and verify is not None:
            raise ValueError("verify (TLS settings) is not supported by kray's job client; kray serves plain HTTP.")
        self._address, token = _resolve(address)
        token = token or _token_of_this_process()
        self._default_metadata = dict(metadata or {})
        self._headers = dict(headers or {})
        if cookies:
            self._headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if token and not any(k.lower() == "authorization" for k in self._headers):
            self._headers["Authorization"] = "Bearer " + token
        version = self._json("GET", "/api/version")
        self._server_version = str(version.get("version", ""))

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, body: Any = None, data: bytes | None = None) -> tuple[int, bytes]:
        headers = dict(self._headers)
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self._address + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except urllib.error.URLError as e:
            raise ConnectionError(f"Failed to connect to kray at address: {self._address} ({e.reason}).") from None

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        status, raw = self._request(method, path, body)
        if status != 200:
            raise RuntimeError(f"Request failed with status code {status}: {raw.decode(errors='replace')}.")
        return json.loads(raw)

    def get_address(self) -> str:
        return self._address

    def get_version(self) -> str:
        return str(self._server_version)

    # ------------------------------------------------------------------ jobs

    def submit_job(self, *, entrypoint: str, job_id: str | None = None, runtime_env: dict[str, Any] | None = None,
                   metadata: dict[str, str] | None = None, submission_id: str | None = None,
                   entrypoint_num_cpus: float | None = None, entrypoint_num_gpus: float | None = None,
                   entrypoint_memory: int | None = None, entrypoint_resources: dict[str, float] | None = None,
                   entrypoint_label_selector: dict[str, str] | None = None) -> str:
        """Submit a job; returns its submission id. Local working_dir/py_modules are uploaded first."""
        if entrypoint_label_selector:
            raise ValueError("entrypoint_label_selector is not supported by kray; use entrypoint_resources.")
        from kray import runtime_env as runtime_env_mod
        from kray.runtime_env import packaging

        env = runtime_env_mod.validate(runtime_env or {})
        env = packaging.upload_local(env, self._package_exists, self._upload_package)
        body: dict[str, Any] = {
            "entrypoint": entrypoint, "submission_id": submission_id or job_id, "runtime_env": env,
            "metadata": {**self._default_metadata, **(metadata or {})},
            "entrypoint_num_cpus": entrypoint_num_cpus, "entrypoint_num_gpus": entrypoint_num_gpus,
            "entrypoint_memory": entrypoint_memory, "entrypoint_resources": entrypoint_resources,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return str(self._json("POST", "/api/jobs/", body)["submission_id"])

    def _package_path(self, uri: str) -> str:
        protocol, name = uri.split("://", 1)
        return f"/api/packages/{protocol}/{urllib.parse.quote(name)}"

    def _package_exists(self, uri: str) -> bool:
        status, raw = self._request("GET", self._package_path(uri))
        if status not in (200, 404):
            raise RuntimeError(f"Request failed with status code {status}: {raw.decode(errors='replace')}.")
        return status == 200

    def _upload_package(self, uri: str, data: bytes) -> None:
        status, raw = self._request("PUT", self._package_path(uri), data=data)
        if status != 200:
            raise RuntimeError(f"Uploading {uri} failed with status code {status}: {raw.decode(errors='replace')}.")

    def stop_job(self, job_id: str) -> bool:
        """Ask a job to stop (SIGTERM, then SIGKILL); False when it had already ended."""
        return bool(self._json("POST", f"/api/jobs/{job_id}/stop")["stopped"])

    def delete_job(self, job_id: str) -> bool:
        """Delete an ended job's record and logs."""
        return bool(self._json("DELETE", f"/api/jobs/{job_id}")["deleted"])

    def get_job_info(self, job_id: str) -> JobDetails:
        return JobDetails.from_json(self._json("GET", f"/api/jobs/{job_id}"))

    def list_jobs(self) -> list[JobDetails]:
        return [JobDetails.from_json(item) for item in self._json("GET", "/api/jobs/")]

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.get_job_info(job_id).status

    def get_job_logs(self, job_id: str) -> str:
        return str(self._json("GET", f"/api/jobs/{job_id}/logs")["logs"])

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The job's output as it is written, until the job ends."""
        import aiohttp

        async with aiohttp.ClientSession(headers=self._headers) as session:
            ws = await session.ws_connect(f"{self._address}/api/jobs/{job_id}/logs/tail")
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    yield msg.data
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
                    break
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise ConnectionError(f"the log stream of job {job_id} broke: {ws.exception()}")
