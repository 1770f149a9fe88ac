"""runtime_env, as Ray has it: working_dir, py_modules, excludes, env_vars, pip and config, for jobs,
tasks and actors. `validate` checks one; `packaging` zips and uploads local directories;
`setup.prepare` sets one up on a node (the job server uses it for a job's driver, workers for themselves).

Importing does no I/O; the submodules say what they touch.
"""

from __future__ import annotations

from kray.runtime_env import ignore, packaging, pip, setup, validation
from kray.runtime_env.validation import RuntimeEnv, RuntimeEnvConfig, validate

__all__ = ["RuntimeEnv", "RuntimeEnvConfig", "ignore", "packaging", "pip", "setup", "validate", "validation"]
