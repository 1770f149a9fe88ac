"""Pins kray's public API and the import arrows of DESIGN.md (api -> core -> protocol)."""

from __future__ import annotations

import ast
import pathlib

import kray

RUNTIME = pathlib.Path(kray.__file__).parent


def test_public_exports_are_pinned() -> None:
    assert sorted(kray.__all__) == sorted([
        "ActorHandle", "DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator", "available_resources", "get_actor", "kill", "method", "cancel", "cluster_resources", "exceptions", "get",
        "get_gpu_ids", "get_runtime_context", "init", "is_initialized", "nodes", "put", "remote", "shutdown", "timeline",
        "wait",
    ])
    for name in kray.__all__:
        assert hasattr(kray, name)


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (RUNTIME / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kray"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("kray"))
    return found


def test_process_packages_and_core_never_import_the_api() -> None:
    for package in ("core", "protocol", "gcs", "raylet", "object_store", "worker", "scheduling"):
        bad = {m for m in _imports(package) if m.startswith("kray.api")}
        assert not bad, f"kray.{package} imports {bad}: arrows point down (api -> core -> protocol)"


def test_pure_packages_do_no_io_imports() -> None:
    for module in _imports("scheduling"):
        assert module.startswith("kray.scheduling"), f"kray.scheduling imports {module}"
