"""`kray.util.inspect_serializability`: find what inside an object cannot be pickled, as Ray's does.

Pure apart from printing its report (to `print_file`, stdout by default); pickles with cloudpickle,
the serializer tasks and objects use.
"""

from __future__ import annotations

import inspect
from typing import Any

import cloudpickle

_RULE_MAX = 80


class FailureTuple:
    """One object that failed to pickle: `obj`, the `path` of names from the inspected object down
    to it, and the `parent` that references it."""

    def __init__(self, obj: Any, path: tuple[str, ...], parent: Any) -> None:
        self.obj = obj
        self.path = path
        self.parent = parent

    @property
    def name(self) -> str | None:
        return self.path[-1] if self.path else None

    def __repr__(self) -> str:
        shown = " -> ".join(self.path) or "unknown"
        return f"FailTuple({self.name or 'unknown'} [path={shown}, obj={self.obj}, parent={self.parent}])"


class _Report:
    def __init__(self, print_file: Any) -> None:
        self.level = 0
        self.print_file = print_file

    def line(self, text: str) -> None:
        print("    " * self.level + text, file=self.print_file)


def inspect_serializability(base_obj: Any, name: str | None = None, depth: int = 3,
                            print_file: Any = None) -> tuple[bool, set[FailureTuple]]:
    """Whether `base_obj` pickles, and if not, the innermost objects found (walking a function's
    globals and closure, an object's attributes, `depth` levels down) that do not, with the
    attribute path to each. Prints the walk, as Ray's inspect_serializability does."""
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative integer, got {depth!r}.")
    report = _Report(print_file)
    title = f"Checking Serializability of {base_obj}"
    rule = "=" * min(len(title), _RULE_MAX)
    report.line(rule)
    report.line(title)
    report.line(rule)
    failures: set[FailureTuple] = set()
    ok = _inspect(base_obj, name, depth, None, (name,) if name else (), failures, report, top=True)
    if not ok:
        report.line(rule)
        listed = "\n".join(f"\t{failure}" for failure in failures)
        report.line(f"Variable: \n\n{listed}\n\nwas found to be non-serializable. There may be multiple other "
                    "undetected variables that were non-serializable.")
        report.line("Consider either removing the instantiation/imports of these variables or moving the "
                    "instantiation into the scope of the function/class.")
        report.line(rule)
    return ok, failures


def _inspect(obj: Any, name: str | None, depth: int, parent: Any, path: tuple[str, ...],
             failures: set[FailureTuple], report: _Report, top: bool = False) -> bool:
    if not top:
        report.line(f"Serializing '{name}' {obj}...")
    try:
        cloudpickle.dumps(obj)
        return True
    except Exception as e:  # noqa: BLE001 - any pickling failure is what we are looking for
        report.line(f"!!! FAIL serialization: {e}")
    found_inside = False
    if depth > 0:
        for header, children in _children(obj):
            if header:
                report.line(header)
            report.level += 1
            for child_name, child in children:
                if not _inspect(child, child_name, depth - 1, obj, (*path, child_name), failures, report):
                    found_inside = True
                    break  # the first culprit, as Ray reports it
            report.level -= 1
            if found_inside:
                break
        if not found_inside:
            report.line(f"WARNING: Did not find non-serializable object in {obj}. This may be an oversight.")
    if not found_inside:
        failures.add(FailureTuple(obj, path, parent))
    return False


def _children(obj: Any) -> list[tuple[str, list[tuple[str, Any]]]]:
    """What `obj` refers to by name, in groups with a header line: a function's globals and closure
    cells, else its attributes (and a container's items)."""
    if inspect.isfunction(obj):
        closure = inspect.getclosurevars(obj)
        return [
            (f"Detected {len(variables)} {kind} variables. Checking serializability...", list(variables.items()))
            for kind, variables in (("global", closure.globals), ("nonlocal", closure.nonlocals)) if variables
        ]
    members: list[tuple[str, Any]] = []
    try:
        everything = inspect.getmembers(obj)
    except Exception:  # noqa: BLE001 - a property that raises: fall back to the instance's own fields
        everything = list(getattr(obj, "__dict__", {}).items())
    for member_name, member in everything:
        if (member_name.startswith("__") and member_name.endswith("__")) or inspect.isbuiltin(member):
            continue
        members.append((member_name, member))
    if isinstance(obj, dict):
        members.extend((str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        members.extend((f"[{i}]", v) for i, v in enumerate(obj))
    return [("", members)]
