"""What each kray process imports at start (issue 18): the GCS, raylet and workers load neither the driver
API nor the operator's, HTTP or async stacks, and `import kray` loads the API on first use. Runs fresh
interpreters; no cluster."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pydantic", "aiohttp", "kopf", "kray_operator", "prometheus_client", "asyncio", "ssl", "numpy")


def _modules(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                          capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


def test_the_servers_and_workers_import_none_of_the_heavy_stacks() -> None:
    for main in ("kray.gcs.__main__", "kray.raylet.__main__", "kray.worker.__main__"):
        loaded = _modules(f"import {main}")
        assert not {m for m in HEAVY if m in loaded}, f"{main} imports {sorted(m for m in HEAVY if m in loaded)}"
        assert not any(m.startswith("kray.api") for m in loaded), f"{main} imports the driver API"


def test_import_kray_loads_the_api_on_first_use() -> None:
    assert not any(m.startswith(("kray.api", "zmq")) for m in _modules("import kray"))
    loaded = _modules("import kray\nkray.remote\nkray.init")
    assert {"kray.api.remote_function", "kray.api.runtime"} <= loaded
    assert not {m for m in HEAVY if m in loaded}
