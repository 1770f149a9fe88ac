"""The operator's client of a cluster's job API (Ray's Jobs REST API on the head, port 8265): get,
submit, stop and list jobs, with the cluster token as a Bearer header.

Does blocking HTTP (urllib) with a timeout on every call; call it from kopf's handler threads.
Errors: JobNotFoundError (404), SubmissionRefusedError (a 4xx answer to a submission),
JobApiError (unreachable, timed out, 5xx, or an answer that is not JSON).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT_S = 10.0
_ERROR_BODY_LIMIT = 2000


class JobApiError(RuntimeError):
    """The job API could not be reached or answered with an error; `status` is 0 when unreachable."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class JobNotFoundError(JobApiError):
    """The job API knows no job of that submission id (404)."""


class SubmissionRefusedError(JobApiError):
    """The job API refused a submission (4xx): a duplicate submission id, or a bad request."""


class Client:
    """The job API at `base_url` (e.g. http://100.64.0.5:8265), authenticated with `token` when given."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"jobapi.Client({self.base_url!r})"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        what = f"{method} {url}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            detail = _error_text(e)
            cls = JobNotFoundError if e.code == 404 else JobApiError
            raise cls(f"{what}: {e.code} {detail}", e.code) from e
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise JobApiError(f"{what}: the job API is unreachable ({getattr(e, 'reason', e)})") from e
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise JobApiError(f"{what}: the answer is not JSON: {raw[:200]!r}") from e

    def get_job(self, submission_id: str) -> dict[str, Any]:
        """JobDetails of the job (status, message, start_time, end_time in ms, ...)."""
        result = self._request("GET", f"/api/jobs/{urllib.parse.quote(submission_id, safe='')}")
        if not isinstance(result, dict):
            raise JobApiError(f"GET /api/jobs/{submission_id}: expected a JSON object, got {result!r:.200}")
        return result

    def submit_job(self, request: dict[str, Any]) -> str:
        """POST /api/jobs/ with a submission request; returns the submission id."""
        try:
            result = self._request("POST", "/api/jobs/", request)
        except JobApiError as e:
            if 400 <= e.status < 500 and e.status != 404:
                raise SubmissionRefusedError(str(e), e.status) from e
            raise
        if isinstance(result, dict) and result.get("submission_id"):
            return str(result["submission_id"])
        return str(request.get("submission_id") or "")

    def stop_job(self, submission_id: str) -> bool:
        """POST /api/jobs/{id}/stop; whether a running job was told to stop."""
        result = self._request("POST", f"/api/jobs/{urllib.parse.quote(submission_id, safe='')}/stop")
        return bool(isinstance(result, dict) and result.get("stopped"))

    def list_jobs(self) -> list[dict[str, Any]]:
        """GET /api/jobs/: every job the cluster knows."""
        result = self._request("GET", "/api/jobs/")
        return list(result) if isinstance(result, list) else []

    def cluster_demand(self) -> dict[str, Any]:
        """GET /api/cluster/demand: nodes (with idle time and labels), pending shapes, placement groups
        and resource requests, as the autoscaler reads them."""
        result = self._request("GET", "/api/cluster/demand")
        if not isinstance(result, dict):
            raise JobApiError(f"GET /api/cluster/demand: expected a JSON object, got {result!r:.200}")
        return result

    def logs(self, submission_id: str) -> str:
        """GET /api/jobs/{id}/logs: the driver's output so far."""
        result = self._request("GET", f"/api/jobs/{urllib.parse.quote(submission_id, safe='')}/logs")
        return str(result.get("logs") or "") if isinstance(result, dict) else ""


def _error_text(error: urllib.error.HTTPError) -> str:
    """The server's explanation of an HTTP error (its JSON `message`/`detail`, else the body)."""
    try:
        raw = error.read()[:_ERROR_BODY_LIMIT].decode(errors="replace")
    except OSError:
        return str(error.reason)
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.strip() or str(error.reason)
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body.get("error") or raw)
    return raw
