"""The pure modules (models, quantity, builders) import nothing that does I/O, reads clocks or randomness."""

from __future__ import annotations

import ast
import pathlib

import crd_helpers
import pytest

PACKAGE = crd_helpers.ROOT / "operator" / "kray_operator"
PURE = [PACKAGE / "models.py", PACKAGE / "job_models.py", PACKAGE / "quantity.py", *sorted((PACKAGE / "builders").glob("*.py")),
        *(PACKAGE / "autoscaler" / f"{name}.py" for name in ("capacity", "policy", "spec"))]
ALLOWED = {
    "__future__", "typing", "dataclasses", "decimal", "enum", "json", "re", "string", "copy", "shlex",
    "base64", "collections", "pydantic", "yaml", "kray_operator",
}


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_module_imports(path: pathlib.Path) -> None:
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= ALLOWED, f"{path.name} imports {sorted(imported - ALLOWED)}"
    assert ast.get_docstring(tree), f"{path.name} needs a module docstring"
    assert "no I/O" in ast.get_docstring(tree), f"{path.name}'s docstring should say it does no I/O"


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_builders_import_modules_not_names(path: pathlib.Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kray_operator"):
            for alias in node.names:
                target = PACKAGE.parent / node.module.replace(".", "/") / f"{alias.name}.py"
                assert target.exists(), f"{path.name}: import the module, not {node.module}.{alias.name}"
