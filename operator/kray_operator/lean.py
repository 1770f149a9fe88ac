"""Imports kopf and registers kray's handlers without the kubernetes client, and logs kopf in with kray's own
credentials (credentials.py, shared with kube.py); only `python -m kray_operator` imports this module.

kopf imports the kubernetes client when it is installed (about 20 MiB resident) only to recognise the
client's model objects, which kray never hands it, and to log in through it. Hiding the package while
kopf and the handlers load keeps it out; afterwards it is importable again (credentials.py imports it for
kubeconfig users that log in through an exec plugin or an auth-provider). No I/O at import time.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from kray_operator import kube  # its own HTTP client: imports neither kopf nor the kubernetes client


@contextlib.contextmanager
def hidden(*packages: str) -> Iterator[None]:
    """`import` of these packages fails inside the block (a None entry in sys.modules), as if not installed."""
    hide = [name for name in packages if name not in sys.modules]
    for name in hide:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hide:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


with hidden("kubernetes", "kubernetes_asyncio", "pykube"):
    import kopf

    from kray_operator import handlers  # noqa: F401 - registers the handlers, creating kopf's registry


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's connection: the operator's credentials (in-cluster ServiceAccount, else the kubeconfig).

    kopf calls it again when the API server answers 401, which picks up a rotated ServiceAccount token.
    """
    creds = kube.credentials()
    return kopf.ConnectionInfo(
        server=creds.server, ca_path=creds.ca_path, ca_data=creds.ca_data, insecure=creds.insecure or None,
        certificate_path=creds.certificate_path, certificate_data=creds.certificate_data,
        private_key_path=creds.private_key_path, private_key_data=creds.private_key_data,
        username=creds.username, password=creds.password, token=creds.token(),
        default_namespace=creds.namespace, proxy_url=creds.proxy_url,
    )
