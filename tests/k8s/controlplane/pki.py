"""Certificates, keys and kubeconfigs for the test control plane, made with the openssl CLI.

Runs `openssl` as a subprocess and writes files into the one directory it is given; nothing else.
"""

from __future__ import annotations

import base64
import dataclasses
import subprocess
from pathlib import Path

import yaml

CLUSTER_NAME = "kray-test"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# The first address of the service range is the `kubernetes` Service; the serving cert must name it.
KUBERNETES_SERVICE_IP = "10.0.0.1"
_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]


class PKIError(RuntimeError):
    """openssl failed while making the control plane's certificates."""


@dataclasses.dataclass(frozen=True)
class Credential:
    """A certificate and its private key, as files."""

    cert: Path
    key: Path


@dataclasses.dataclass(frozen=True)
class PKI:
    """Every file the control plane's processes and clients need."""

    ca: Credential
    apiserver: Credential
    admin: Credential
    controller_manager: Credential
    service_account_key: Path
    service_account_pub: Path


def _openssl(args: list[str], cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise PKIError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def _make_ca(d: Path) -> Credential:
    ca = Credential(d / "ca.crt", d / "ca.key")
    _openssl(
        ["req", "-x509", *_EC_KEY, "-nodes", "-keyout", str(ca.key), "-out", str(ca.cert),
         "-days", "3650", "-subj", f"/CN={CLUSTER_NAME}-ca",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"],
        d,
    )
    return ca


def _issue(d: Path, ca: Credential, name: str, subject: str, extensions: list[str]) -> Credential:
    """Makes a key and a certificate signed by `ca` with the given x509v3 extension lines."""
    cred = Credential(d / f"{name}.crt", d / f"{name}.key")
    csr = d / f"{name}.csr"
    ext = d / f"{name}.ext"
    ext.write_text("\n".join(extensions) + "\n")
    _openssl(["req", "-new", *_EC_KEY, "-nodes", "-keyout", str(cred.key), "-out", str(csr),
              "-subj", subject], d)
    _openssl(["x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
              "-CAcreateserial", "-out", str(cred.cert), "-days", "365", "-extfile", str(ext)], d)
    csr.unlink()
    ext.unlink()
    return cred


def make_pki(d: Path) -> PKI:
    """Creates a CA, the API server's serving cert, two client certs and a service-account key pair."""
    d.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(d)
    client_ext = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature",
                  "extendedKeyUsage=clientAuth"]
    sans = ",".join([
        "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local", "IP:127.0.0.1", f"IP:{KUBERNETES_SERVICE_IP}",
    ])
    apiserver = _issue(d, ca, "apiserver", "/CN=kube-apiserver", [
        "basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth", f"subjectAltName={sans}",
    ])
    admin = _issue(d, ca, "admin", "/O=system:masters/CN=kray-admin", client_ext)
    kcm = _issue(d, ca, "controller-manager", "/CN=system:kube-controller-manager", client_ext)
    sa_key, sa_pub = d / "sa.key", d / "sa.pub"
    _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(sa_key)], d)
    _openssl(["pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)], d)
    return PKI(ca=ca, apiserver=apiserver, admin=admin, controller_manager=kcm,
               service_account_key=sa_key, service_account_pub=sa_pub)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def write_kubeconfig(path: Path, server: str, ca: Credential, user: str, cred: Credential) -> Path:
    """Writes a kubeconfig with embedded certificates, usable by kubectl, kopf and the kubernetes client."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME,
                      "cluster": {"server": server, "certificate-authority-data": _b64(ca.cert)}}],
        "users": [{"name": user,
                   "user": {"client-certificate-data": _b64(cred.cert), "client-key-data": _b64(cred.key)}}],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
