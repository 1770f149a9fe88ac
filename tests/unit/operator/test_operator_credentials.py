"""Unit tests of the operator's credentials (credentials.py): kubeconfig merging and paths, in-cluster tokens
that rotate, the Authorization header, and the lean start-up that keeps the kubernetes client out of kopf.

No API server; kubeconfigs and token files are written to tmp_path (the last test runs one interpreter).
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kray_operator import credentials


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def _kubeconfig(current: str | None, cluster: dict[str, Any], user: dict[str, Any], name: str = "c") -> dict[str, Any]:
    return {
        "current-context": current,
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "team-a"}}],
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
    }


@pytest.fixture(autouse=True)
def _outside_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def test_the_current_context_of_merged_kubeconfigs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _write(tmp_path / "a.yaml", _kubeconfig("c", {"server": "https://one:6443", "certificate-authority": "ca.pem"},
                                                    {"tokenFile": "token"}))
    (tmp_path / "token").write_text("t1\n")
    second_dir = tmp_path / "b"
    second_dir.mkdir()
    # The same names in a later file lose, as with kubectl; the later file's current-context too.
    second = _write(second_dir / "b.yaml", _kubeconfig("other", {"server": "https://two:6443"}, {"token": "t2"}))
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing.yaml'}:{second}")
    creds = credentials.load()
    assert creds.server == "https://one:6443" and creds.namespace == "team-a"
    assert creds.ca_path == str(tmp_path / "ca.pem")  # relative to the kubeconfig that names it
    assert creds.headers() == {"Authorization": "Bearer t1"}


def test_inline_certificates_and_basic_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    encoded = base64.b64encode(pem.encode()).decode()
    user = {"client-certificate-data": encoded, "client-key-data": encoded, "username": "u", "password": "p"}
    path = _write(tmp_path / "k.yaml", _kubeconfig("c", {"server": "https://x", "certificate-authority-data": encoded,
                                                         "insecure-skip-tls-verify": True,
                                                         "proxy-url": "http://proxy:3128"}, user))
    monkeypatch.setenv("KUBECONFIG", str(path))
    creds = credentials.load()
    assert creds.ca_data == pem and creds.certificate_data == pem and creds.private_key_data == pem
    assert creds.insecure and creds.certificate_path is None and creds.proxy_url == "http://proxy:3128"
    assert creds.headers() == {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}


def test_a_kubeconfig_without_a_current_context_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_write(tmp_path / "k.yaml", _kubeconfig(None, {"server": "https://x"}, {}))))
    with pytest.raises(credentials.CredentialsError, match="no current-context .*set KUBECONFIG"):
        credentials.load()


def test_a_context_naming_a_missing_cluster_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _kubeconfig("c", {"server": "https://x"}, {})
    doc["clusters"] = []
    monkeypatch.setenv("KUBECONFIG", str(_write(tmp_path / "k.yaml", doc)))
    with pytest.raises(credentials.CredentialsError, match="context 'c' names a missing 'c'"):
        credentials.load()


def test_in_a_pod_the_service_account_token_is_reread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("first")
    (tmp_path / "ca.crt").write_text("ca")
    (tmp_path / "namespace").write_text("kray-system\n")
    monkeypatch.setattr(credentials, "SERVICE_ACCOUNT_DIR", str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    creds = credentials.load()
    assert creds.server == "https://[fd00::1]:443" and creds.ca_path == str(tmp_path / "ca.crt")
    assert creds.namespace == "kray-system" and creds.token() == "first"
    (tmp_path / "token").write_text("rotated")
    assert creds.token() == "first"  # re-read once a minute, as client-go does
    monkeypatch.setattr(credentials, "TOKEN_REREAD_S", 0.0)
    assert creds.token() == "rotated"


def test_the_operator_starts_without_importing_the_kubernetes_client() -> None:
    code = "import sys, kray_operator.__main__; print(sorted(m for m in sys.modules if m.startswith('kubernetes')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
