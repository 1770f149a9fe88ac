"""runtime_env's `worker_process_setup_hook` (Ray's): a function that every worker of the env runs once,
after the env is set up and before it takes any task or actor (logging configuration, environment
tweaks, warming a cache).

Given as a callable, which travels pickled by value inside the env's canonical text (as function
bodies do), or as the dotted path of a module-level function ("my_pkg.setup.configure_logging"),
which each worker imports. A hook that raises fails the env: the tasks and actors waiting for it get a
RuntimeEnvSetupError with the hook's traceback.
"""

from __future__ import annotations

import base64
import importlib
import traceback
from collections.abc import Callable
from typing import Any

FIELD = "worker_process_setup_hook"
_PICKLED = "cloudpickle:"  # never in a dotted path


class SetupHookError(ValueError, TypeError):
    """A worker_process_setup_hook that cannot be used (raised where runtime_env fields are checked)."""


def normalize(value: Any) -> str:
    """The hook as text: a dotted path as given, a callable pickled by value."""
    if isinstance(value, str):
        if value.startswith(_PICKLED) or _is_dotted_path(value):
            return value
        raise SetupHookError(f"runtime_env {FIELD} {value!r} is not a 'module.function' path; pass the function "
                             "itself or the dotted path of a module-level function.")
    if callable(value):
        import cloudpickle

        try:
            data = cloudpickle.dumps(value)
        except Exception as e:  # noqa: BLE001 - whatever pickling raises, the user gets one clear error
            raise SetupHookError(f"runtime_env {FIELD} {value!r} cannot be serialized: {type(e).__name__}: {e}") from None
        return _PICKLED + base64.b64encode(data).decode("ascii")
    raise SetupHookError(f"runtime_env {FIELD} must be a callable or the 'module.function' path of one, "
                         f"got {type(value).__name__}.")


def load(text: str) -> Callable[[], Any]:
    """The hook function `text` (from normalize) stands for."""
    if text.startswith(_PICKLED):
        import cloudpickle

        hook = cloudpickle.loads(base64.b64decode(text[len(_PICKLED):]))
    else:
        module, _, name = text.rpartition(".")
        hook = getattr(importlib.import_module(module), name)
    if not callable(hook):
        raise TypeError(f"{FIELD} {text!r} is a {type(hook).__name__}, not a function")
    return hook


def run(text: str) -> str | None:
    """Run the hook in this process; None when it succeeded, else the error (with its traceback)."""
    try:
        load(text)()
    except BaseException as e:  # noqa: BLE001 - a hook's SystemExit fails the env too, with its cause
        shown = text if not text.startswith(_PICKLED) else "(a function)"
        return f"{FIELD} {shown} failed: {type(e).__name__}: {e}\n{traceback.format_exc()}"
    return None


def _is_dotted_path(text: str) -> bool:
    parts = text.split(".")
    return len(parts) >= 2 and all(part.isidentifier() for part in parts)
