"""MultiOutputNode: several DAG nodes as one output; executes to the list of their results.

Pure: no I/O of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kray.dag import dag_node


class MultiOutputNode(dag_node.DAGNode):
    """Several nodes as one DAG output: executes to the list of their results."""

    def __init__(self, outputs: list[dag_node.DAGNode] | tuple[dag_node.DAGNode, ...],
                 other_args_to_resolve: dict[str, Any] | None = None) -> None:
        if not isinstance(outputs, (list, tuple)):
            raise TypeError(f"MultiOutputNode takes a list of DAG nodes, got {type(outputs).__name__}.")
        for output in outputs:
            if not isinstance(output, dag_node.DAGNode):
                raise TypeError(f"MultiOutputNode takes DAG nodes only (made by .bind()), got {output!r}.")
        super().__init__([list(outputs)], {}, {})

    def _execute_impl(self, resolve: Callable[[Any], Any], execution: Any) -> Any:
        return list(resolve(self._bound_args[0]))
