"""Ray's direct_transport_custom example imports Ray Direct Transport's names from `ray.experimental`; kray
does not implement tensor transports, so the import fails at once with an error that says so (through the
`ray` compatibility package too), while kray.experimental's own helpers still import."""

from __future__ import annotations

import os
import subprocess
import sys

from . import helpers

PROGRAM = """
from ray.experimental import tqdm_ray  # still there
try:
    from ray.experimental import TensorTransportManager, register_tensor_transport
except ImportError as e:
    print(e)
else:
    raise SystemExit("Ray Direct Transport's names imported")
"""


def test_importing_ray_direct_transport_names_fails_naming_them() -> None:
    compat = os.path.join(os.path.dirname(helpers.package_root()), "compat")
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([compat, helpers.package_root()])})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TensorTransportManager belongs to Ray Direct Transport" in done.stdout
    assert "tensor_transport='object_store' only" in done.stdout
