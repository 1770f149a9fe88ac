"""ClassNode (an actor's creation in a DAG, `Actor.bind(...)`) and ClassMethodNode (an actor call,
`node.method.bind(...)` or `handle.method.bind(...)`).

Executing them submits through the actor class's and actor method's ordinary `.remote(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kray.dag import dag_node, input_node


class ClassNode(dag_node.DAGNode):
    """An actor's creation in a DAG (`Actor.bind(...)`); executes to a new actor's handle. Bind its
    methods with `node.method.bind(...)`."""

    def __init__(self, actor_class: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(args, kwargs, options or {})
        self._body = actor_class
        self._last_call: ClassMethodNode | None = None
        if any(isinstance(n, (input_node.InputNode, input_node.InputAttributeNode)) for n in self._upstream()):
            raise ValueError(
                "An InputNode cannot be an argument of an actor's constructor (.bind() on an actor class): the "
                "DAG's input is only known when it executes. Pass it to a method's .bind() instead."
            )

    def _execute_impl(self, resolve: Callable[[Any], Any], execution: Any) -> Any:
        actor_class = self._body.options(**self._bound_options) if self._bound_options else self._body
        return actor_class.remote(*resolve(self._bound_args), **resolve(self._bound_kwargs))

    def __getattr__(self, name: str) -> _UnboundClassMethodNode:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        body = self.__dict__.get("_body")
        cls = getattr(body, "_cls", None)
        if name == "bind":
            raise AttributeError(f".bind() cannot be used again on {type(self).__name__}.")
        if cls is None or not callable(getattr(cls, name, None)):
            raise AttributeError(f"'{getattr(body, '__name__', 'Actor')}' actor class has no method {name!r}")
        return _UnboundClassMethodNode(self, name, {})

    def __str__(self) -> str:
        return f"(ClassNode {getattr(self._body, '__name__', self._body)})"


class _UnboundClassMethodNode:
    """`class_node.method`: `.bind(...)` it (optionally after `.options(...)`)."""

    def __init__(self, actor: ClassNode, method_name: str, options: dict[str, Any]) -> None:
        self._actor = actor
        self._method_name = method_name
        self._options = options

    def options(self, **options: Any) -> _UnboundClassMethodNode:
        return _UnboundClassMethodNode(self._actor, self._method_name, {**self._options, **options})

    def bind(self, *args: Any, **kwargs: Any) -> ClassMethodNode:
        node = ClassMethodNode(self._actor, self._method_name, args, kwargs, self._options,
                               previous_call=self._actor._last_call)
        self._actor._last_call = node
        return node

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        raise AttributeError(
            ".remote() cannot be used on a method of a ClassNode. Use .bind() to add the call to the DAG, "
            "or create the actor with .remote() first."
        )


class ClassMethodNode(dag_node.DAGNode):
    """An actor method call in a DAG (`class_node.method.bind(...)` or `handle.method.bind(...)`);
    executes to the call's ObjectRef(s). Calls bound on one ClassNode are submitted in bind order."""

    def __init__(self, parent: Any, method_name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 options: dict[str, Any] | None = None, previous_call: ClassMethodNode | None = None) -> None:
        super().__init__(args, kwargs, options or {})
        self._parent = parent  # a ClassNode, an ActorHandle or an ActorMethod (with its options)
        self._method_name = method_name
        self._previous_call = previous_call

    def get_method_name(self) -> str:
        return self._method_name

    def _get_all_child_nodes(self) -> list[dag_node.DAGNode]:
        extra: list[dag_node.DAGNode] = []
        if isinstance(self._parent, dag_node.DAGNode):
            extra.append(self._parent)
        if self._previous_call is not None:
            extra.append(self._previous_call)  # keeps the actor's calls in bind order
        seen: dict[int, dag_node.DAGNode] = {}
        for node in (*extra, *super()._get_all_child_nodes()):
            seen.setdefault(id(node), node)
        return list(seen.values())

    def _execute_impl(self, resolve: Callable[[Any], Any], execution: Any) -> Any:
        from kray.api import actor

        parent = resolve(self._parent)
        method = parent if isinstance(parent, actor.ActorMethod) else getattr(parent, self._method_name)
        if self._bound_options:
            method = method.options(**self._bound_options)
        return method.remote(*resolve(self._bound_args), **resolve(self._bound_kwargs))

    def __str__(self) -> str:
        return f"(ClassMethodNode {self._method_name}())"
