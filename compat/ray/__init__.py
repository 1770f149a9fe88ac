"""`import ray` is kray: this package replaces itself with `kray`, and `ray.X` submodules are kray's
`kray.X` modules themselves (one module object each, never a copy), so unmodified Ray programs run.

Installs an import hook (sys.meta_path) when imported; no other side effect.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

import kray

_PREFIX = "ray."


class _KrayAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `ray.X` as `kray.X`."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_PREFIX):
            return None
        name = "kray." + fullname[len(_PREFIX):]
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: kray implements Ray Core (tasks, actors, objects, jobs, util), "
                f"not {fullname}.", name=fullname)
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module("kray." + spec.name[len(_PREFIX):])

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the kray module is already loaded."""


if not any(isinstance(finder, _KrayAlias) for finder in sys.meta_path):
    sys.meta_path.insert(0, _KrayAlias())
sys.modules[__name__] = kray
