"""DAGNode, the base of Ray's lazy DAG API: a call recorded by `.bind()` and run by `.execute()`.

Pure bookkeeping plus the executor: executing a DAG submits its tasks and actor calls through
the ordinary `.remote()` paths, each node once per `execute()`, children before parents.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any


class DAGNode:
    """A node of a lazily built DAG: a remote call with its bound arguments, some of which may be nodes.

    `execute(*args, **kwargs)` runs the DAG with the given input (what `InputNode` stands for) and
    returns what the root's `.remote()` returns: an ObjectRef, an actor handle, or a list of them.
    """

    def __init__(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> None:
        self._bound_args = list(args)
        self._bound_kwargs = dict(kwargs)
        self._bound_options = dict(options)
        self._stable_uuid = uuid.uuid4().hex

    # --- what Ray's DAGNode offers to read a node ------------------------------------------------

    def get_args(self) -> tuple[Any, ...]:
        """The positional arguments bound to this node (nodes among them not yet executed)."""
        return tuple(self._bound_args)

    def get_kwargs(self) -> dict[str, Any]:
        """The keyword arguments bound to this node."""
        return dict(self._bound_kwargs)

    def get_options(self) -> dict[str, Any]:
        """The `.options()` this node's call will be submitted with."""
        return dict(self._bound_options)

    def get_stable_uuid(self) -> str:
        return self._stable_uuid

    def options(self, **options: Any) -> DAGNode:
        """A copy of this node whose call uses these options too (as `.options()` before `.remote()`)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._bound_options = {**self._bound_options, **options}
        clone._stable_uuid = uuid.uuid4().hex
        return clone

    def _upstream(self) -> list[DAGNode]:
        """The nodes this one depends on: nodes among its arguments, at any depth of lists, tuples and dicts."""
        found: list[DAGNode] = []
        for value in (*self._bound_args, *self._bound_kwargs.values()):
            _collect_nodes(value, found)
        return found

    def _get_all_child_nodes(self) -> list[DAGNode]:
        """The nodes this one depends on directly, each once (Ray's name)."""
        seen: dict[int, DAGNode] = {}
        for node in self._upstream():
            seen.setdefault(id(node), node)
        return list(seen.values())

    # --- execution -------------------------------------------------------------------------------

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Run the DAG rooted here with `args`/`kwargs` as its input; each node runs once per call."""
        return _Execution(args, kwargs).run(self)

    def _execute_impl(self, resolve: Callable[[Any], Any], execution: _Execution) -> Any:
        raise NotImplementedError

    def __reduce__(self) -> Any:
        raise TypeError(
            f"{type(self).__name__} is a DAG node built by .bind(); it cannot be pickled or passed to a task. "
            "Call .execute() on the DAG and pass its ObjectRefs instead."
        )

    def __str__(self) -> str:
        return f"({type(self).__name__}, {self._stable_uuid[:8]})"


def _collect_nodes(value: Any, found: list[DAGNode]) -> None:
    if isinstance(value, DAGNode):
        found.append(value)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _collect_nodes(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_nodes(item, found)


def _replace_nodes(value: Any, results: dict[int, Any]) -> Any:
    """`value` with every DAG node in it replaced by that node's result in this execution."""
    if isinstance(value, DAGNode):
        return results[id(value)]
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_replace_nodes(item, results) for item in value]
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
            return type(value)(*items)
        return type(value)(items)
    if isinstance(value, dict):
        return type(value)({k: _replace_nodes(v, results) for k, v in value.items()})
    return value


class _Execution:
    """One `execute()` call: the DAG's input and each node's result, computed children first without
    recursion (a DAG may be thousands of nodes deep)."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args = args
        self.kwargs = kwargs
        self.results: dict[int, Any] = {}
        self._keep: list[DAGNode] = []  # ids of nodes stay unique while the execution holds them

    def run(self, root: DAGNode) -> Any:
        stack: list[tuple[DAGNode, bool]] = [(root, False)]
        visiting: set[int] = set()
        while stack:
            node, expanded = stack.pop()
            key = id(node)
            if key in self.results:
                continue
            if expanded:
                visiting.discard(key)
                self.results[key] = node._execute_impl(self.resolve, self)
                self._keep.append(node)
                continue
            if key in visiting:
                raise ValueError(f"The DAG has a cycle through {node}.")
            visiting.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node._get_all_child_nodes()) if id(child) not in self.results)
        return self.results[id(root)]

    def resolve(self, value: Any) -> Any:
        return _replace_nodes(value, self.results)
