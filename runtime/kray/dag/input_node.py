"""InputNode, InputAttributeNode and DAGInputData: where a DAG's `execute(...)` arguments enter it.

Pure: no I/O. As in Ray, `execute(x)` makes the InputNode `x` itself; `execute(a, b, k=v)` makes it
a DAGInputData that `inp[0]`, `inp[1]` and `inp.k` (or `inp["k"]`) read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kray.dag import dag_node


class DAGInputData:
    """The input of a DAG executed with several arguments: ints index the positional ones, strings
    name the keyword ones."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = list(args)
        self._kwargs = kwargs

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int) and not isinstance(key, bool):
            return self._args[key]
        if isinstance(key, str):
            return self._kwargs[key]
        raise ValueError(f"DAG input fields are read by int index or str key, got {key!r}.")


class InputNode(dag_node.DAGNode):
    """Marks the DAG's input; use it as `with InputNode() as inp:` and bind `inp`, `inp[0]` or `inp.x`."""

    def __init__(self, *args: Any, input_type: Any = None, **kwargs: Any) -> None:
        if args or kwargs:
            raise ValueError("InputNode takes no arguments: pass the DAG's input to .execute(...) instead.")
        super().__init__([], {}, {})
        self.__dict__["input_type"] = input_type
        self.__dict__["input_attribute_nodes"] = {}
        self.__dict__["_in_context_manager"] = False

    def __enter__(self) -> InputNode:  # noqa: PYI034
        self.__dict__["_in_context_manager"] = True
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, key: str) -> InputAttributeNode:
        if key.startswith("__") and key.endswith("__"):  # copy, pickle and friends probe dunders
            raise AttributeError(key)
        return self._attribute(key, "__getattr__")

    def __getitem__(self, key: int | str) -> InputAttributeNode:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"Use an int index or a str key to read a field of the DAG's input, got {key!r}.")
        return self._attribute(key, "__getitem__")

    def _attribute(self, key: int | str, accessor: str) -> InputAttributeNode:
        cache = self.__dict__["input_attribute_nodes"]
        if (key, accessor) not in cache:
            cache[(key, accessor)] = InputAttributeNode(self, key, accessor)
        return cache[(key, accessor)]

    def _execute_impl(self, resolve: Callable[[Any], Any], execution: Any) -> Any:
        if not self.__dict__["_in_context_manager"]:
            raise ValueError(
                "InputNode must be created as a context manager: `with InputNode() as inp: dag = f.bind(inp)`."
            )
        if len(execution.args) == 1 and not execution.kwargs:
            return execution.args[0]
        return DAGInputData(*execution.args, **execution.kwargs)

    def __str__(self) -> str:
        return "(InputNode)"


class InputAttributeNode(dag_node.DAGNode):
    """A field of the DAG's input: `inp[0]`, `inp["k"]` or `inp.k`."""

    def __init__(self, input_node: InputNode, key: int | str, accessor: str) -> None:
        super().__init__([input_node], {}, {})
        self._key = key
        self._accessor = accessor

    def _execute_impl(self, resolve: Callable[[Any], Any], execution: Any) -> Any:
        value = resolve(self._bound_args[0])
        if isinstance(value, DAGInputData):
            try:
                return value[self._key]
            except (IndexError, KeyError):
                raise ValueError(
                    f"The DAG reads input field {self._key!r}, but execute() got {len(execution.args)} positional "
                    f"argument(s) and the keyword(s) {sorted(execution.kwargs)}."
                ) from None
        if isinstance(self._key, str) and self._accessor == "__getattr__":
            return getattr(value, self._key)
        return value[self._key]

    def __str__(self) -> str:
        return f"(InputAttributeNode [{self._key!r}])"
