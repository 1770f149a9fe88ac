"""FunctionNode: a remote function's task in a DAG (`f.bind(...)`).

Executing it submits through the function's ordinary `.options(...).remote(...)`; no I/O of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kray.dag import dag_node


class FunctionNode(dag_node.DAGNode):
    """A remote function's task in a DAG (`f.bind(...)`); executes to the task's ObjectRef(s)."""

    def __init__(self, remote_function: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(args, kwargs, options or {})
        self._body = remote_function

    def _execute_impl(self, resolve: Callable[[Any], Any], execution: Any) -> Any:
        function = self._body.options(**self._bound_options) if self._bound_options else self._body
        return function.remote(*resolve(self._bound_args), **resolve(self._bound_kwargs))

    def __str__(self) -> str:
        return f"(FunctionNode {getattr(self._body, '__name__', self._body)})"
