"""The operator's credentials for the Kubernetes API: the in-cluster ServiceAccount, else $KUBECONFIG /
~/.kube/config (current context), as one `Credentials` that kube.py and kopf's login both use.

Reads files only (token, kubeconfig, certificates). Users that log in through an `exec` plugin or an
`auth-provider` are read through the kubernetes client's loader, imported only then: the operator
otherwise never imports the kubernetes client (about 20 MiB of memory, more once its typed APIs load).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import ssl
import tempfile
import threading
import time
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_REREAD_S = 60.0  # projected ServiceAccount tokens rotate; client-go re-reads them every minute


class CredentialsError(RuntimeError):
    """No usable credentials: not in a Pod, and no (valid) kubeconfig."""


@dataclasses.dataclass
class Credentials:
    """Where the API server is and how to prove who we are; `token()` re-reads rotating tokens."""

    server: str
    ca_path: str | None = None
    ca_data: str | None = None  # PEM text
    insecure: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None
    certificate_path: str | None = None
    certificate_data: str | None = None  # PEM text
    private_key_path: str | None = None
    private_key_data: str | None = None  # PEM text
    username: str | None = None
    password: str | None = None
    static_token: str | None = None
    token_path: str | None = None
    namespace: str | None = None
    client_configuration: Any = None  # a kubernetes.client.Configuration (exec / auth-provider users)
    _token: str | None = dataclasses.field(default=None, repr=False)
    _token_read: float = dataclasses.field(default=0.0, repr=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def token(self) -> str | None:
        """The bearer token now (a token file is re-read every minute; an exec plugin runs when it expires)."""
        if self.client_configuration is not None:
            cfg = self.client_configuration  # its refresh hook reruns an expired login first
            header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
            return str(header).split(" ", 1)[-1] if header else None
        if self.token_path is None:
            return self.static_token
        with self._lock:
            if self._token is None or time.monotonic() - self._token_read > TOKEN_REREAD_S:
                with open(self.token_path, encoding="utf-8") as f:
                    self._token = f.read().strip() or None
                self._token_read = time.monotonic()
            return self._token

    def headers(self) -> dict[str, str]:
        """The Authorization header of a request."""
        token = self.token()
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self.username is not None and self.password is not None:
            basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        return {}

    def ssl_context(self) -> ssl.SSLContext:
        """TLS settings: the cluster's CA (or no verification when the kubeconfig says so), client certificate."""
        context = ssl.create_default_context(cafile=self.ca_path, cadata=self.ca_data)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        with contextlib.ExitStack() as stack:  # ssl loads certificates from files only: inline data goes
            cert = self.certificate_path or _temporary(stack, self.certificate_data)  # to a private temp file
            key = self.private_key_path or _temporary(stack, self.private_key_data)
            if cert:
                context.load_cert_chain(cert, key)
        return context


def load() -> Credentials:
    """In-cluster credentials when running in a Pod, else the kubeconfig's current context."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    token_path = os.path.join(SERVICE_ACCOUNT_DIR, "token")
    if host and port and os.path.exists(token_path):
        ca_path = os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt")
        host = f"[{host}]" if ":" in host else host
        return Credentials(server=f"https://{host}:{port}", ca_path=ca_path if os.path.exists(ca_path) else None,
                           token_path=token_path, namespace=_read_optional(os.path.join(SERVICE_ACCOUNT_DIR, "namespace")))
    return from_kubeconfig()


def from_kubeconfig() -> Credentials:
    """The current context of $KUBECONFIG (a list of files, the first value of each key wins) or ~/.kube/config."""
    paths = [os.path.expanduser(p) for p in (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep) if p]
    current: str | None = None
    sections: dict[str, dict[str, Any]] = {"contexts": {}, "clusters": {}, "users": {}}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
        except FileNotFoundError:
            continue
        except (OSError, yaml.YAMLError) as e:
            raise CredentialsError(f"cannot read the kubeconfig {path}: {e}") from e
        current = current or doc.get("current-context")
        base = os.path.dirname(os.path.abspath(path))
        for section, key in (("contexts", "context"), ("clusters", "cluster"), ("users", "user")):
            for item in doc.get(section) or []:
                sections[section].setdefault(item.get("name"), dict(item.get(key) or {}, _dir=base))
    if not current:
        raise CredentialsError(f"no credentials: not in a Pod, and no current-context in the kubeconfig "
                               f"({os.pathsep.join(paths)}); set KUBECONFIG")
    try:
        context = sections["contexts"][current]
        cluster = sections["clusters"][context["cluster"]]
        user = sections["users"].get(context.get("user"), {})
    except KeyError as e:
        raise CredentialsError(f"the kubeconfig's context {current!r} names a missing {e}") from e
    if "exec" in user or "auth-provider" in user:
        return _via_kubernetes_client(context.get("namespace"))
    return Credentials(
        server=str(cluster.get("server") or ""),
        ca_path=_path(cluster, "certificate-authority"),
        ca_data=_decoded(cluster.get("certificate-authority-data")),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name"),
        proxy_url=cluster.get("proxy-url"),
        certificate_path=_path(user, "client-certificate"),
        certificate_data=_decoded(user.get("client-certificate-data")),
        private_key_path=_path(user, "client-key"),
        private_key_data=_decoded(user.get("client-key-data")),
        username=user.get("username"),
        password=user.get("password"),
        static_token=user.get("token"),
        token_path=_path(user, "tokenFile"),
        namespace=context.get("namespace"),
    )


def _via_kubernetes_client(namespace: str | None) -> Credentials:
    """exec plugins and auth-providers (cloud logins) need the kubernetes client's loader: import it now."""
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    return Credentials(server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
                       tls_server_name=cfg.tls_server_name, proxy_url=cfg.proxy, certificate_path=cfg.cert_file,
                       private_key_path=cfg.key_file, namespace=namespace, client_configuration=cfg)


def _path(section: dict[str, Any], key: str) -> str | None:
    """A file named in the kubeconfig; a relative path is relative to that kubeconfig's directory."""
    value = section.get(key)
    return os.path.join(section["_dir"], os.path.expanduser(value)) if value else None


def _decoded(data: str | None) -> str | None:
    return base64.b64decode(data).decode() if data else None


def _temporary(stack: contextlib.ExitStack, pem: str | None) -> str | None:
    """A private temporary file holding `pem`, removed when `stack` closes."""
    if not pem:
        return None
    f = stack.enter_context(tempfile.NamedTemporaryFile("w", prefix="kray-operator-", suffix=".pem"))  # noqa: SIM115
    f.write(pem)
    f.flush()
    return f.name


def _read_optional(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None
