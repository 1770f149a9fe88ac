"""Build script of the `ray` compatibility package: refuses to build where Ray itself is installed.

Both would own the `ray` package directory, so installing one over the other breaks both. The check asks
the interpreter that installs (in isolated mode, past pip's build isolation) whether a `ray` distribution
is there.
"""

import subprocess
import sys

_PROBE = "import importlib.metadata as m; print(m.distribution('ray').version)"


def ray_installed() -> str | None:
    """The version of Ray installed for this interpreter, or None."""
    done = subprocess.run([sys.executable, "-I", "-c", _PROBE], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


found = ray_installed()
if found:
    raise SystemExit(
        f"kray-ray-compat refuses to install: Ray {found} is installed in this environment, and both own the "
        "`ray` package. Use `import kray as ray` here, or install kray-ray-compat in an environment without Ray."
    )

from setuptools import setup  # after the check, which needs no setuptools

setup()
