"""runtime_env, as Ray has it: working_dir, py_modules, excludes, env_vars, pip and config, for jobs,
tasks and actors. `validate` checks one; `packaging` zips and uploads local directories;
`setup.prepare` sets one up on a node (the job server uses it for a job's driver, workers for themselves).

Importing does no I/O; the submodules say what they touch. They load on first use (a worker without a
runtime_env never needs packaging, pip or setup).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kray.runtime_env import validation
from kray.runtime_env.validation import RuntimeEnv, RuntimeEnvConfig, validate

if TYPE_CHECKING:
    from kray.runtime_env import ignore, packaging, pip, setup

__all__ = ["RuntimeEnv", "RuntimeEnvConfig", "ignore", "packaging", "pip", "setup", "validate", "validation"]
_LAZY = ("ignore", "packaging", "pip", "setup")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"kray.runtime_env.{name}")
    raise AttributeError(f"module 'kray.runtime_env' has no attribute {name!r}")
