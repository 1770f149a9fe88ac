"""The DAG API (kray.dag) on one shared local cluster: `.bind()` on remote functions, actor classes and
actor methods, InputNode (whole input, `inp[0]`, `inp.x`, `inp["k"]`), MultiOutputNode and `.execute()`,
checked against Ray's documented behaviour (ray-core/doc_code/ray-dag.py and ray.dag's docstrings).
"""

from __future__ import annotations

import os
import pickle
from types import SimpleNamespace
from typing import Any

import kray
import kray.actor
import pytest
from kray import exceptions
from kray.dag import ClassMethodNode, ClassNode, FunctionNode
from kray.dag.input_node import InputNode
from kray.dag.output_node import MultiOutputNode

from . import helpers

cluster = helpers.module_cluster(num_cpus=2)
pytestmark = pytest.mark.usefixtures("cluster")


@kray.remote
def add(src: int, inc: int = 1) -> int:
    return src + inc


@kray.remote
def token() -> str:
    return os.urandom(8).hex()


@kray.remote
def pair(a: Any, b: Any) -> tuple[Any, Any]:
    return a, b


@kray.remote
def total_of(refs: list[Any]) -> int:
    return sum(kray.get(refs))


@kray.remote
def fail(x: int) -> int:
    raise KeyError(f"no such key {x}")


@kray.remote
class Accumulator:
    def __init__(self, start: int) -> None:
        self.value = start
        self.calls: list[str] = []

    def inc(self, by: int) -> int:
        self.value += by
        self.calls.append(f"inc{by}")
        return self.value

    def get(self) -> int:
        return self.value

    def history(self) -> list[str]:
        return list(self.calls)


def _get(value: Any) -> Any:
    return kray.get(value, timeout=helpers.WAIT_S)


def test_function_dag_with_nodes_as_positional_and_keyword_arguments() -> None:
    first = add.bind(1, inc=2)
    assert isinstance(first, FunctionNode)
    assert _get(first.execute()) == 3
    second = add.bind(first, inc=3)
    assert _get(second.execute()) == 6
    third = add.bind(second, inc=first)  # a node as a keyword argument
    ref = third.execute()
    assert isinstance(ref, kray.ObjectRef)
    assert _get(ref) == 9


def test_a_node_runs_once_per_execute_and_again_on_the_next() -> None:
    shared = token.bind()
    dag = pair.bind(shared, shared)
    a, b = _get(dag.execute())
    assert a == b, "a node two others depend on ran twice in one execute()"
    c, _ = _get(dag.execute())
    assert c != a, "a second execute() reused the first one's result"


def test_input_node_whole_value_and_fields() -> None:
    with InputNode() as inp:
        dag = add.bind(add.bind(inp, inc=10), inc=inp)
    assert _get(dag.execute(2)) == 14
    assert _get(dag.execute(5)) == 20

    with InputNode() as inp:
        by_position = pair.bind(inp[0], inp[1])
        by_keyword = pair.bind(inp[0], inp.x)
    assert _get(by_position.execute(2, 3)) == (2, 3)
    assert _get(by_position.execute([7, 8])) == (7, 8)  # one input: indexed itself
    assert _get(by_keyword.execute(1, x=2)) == (1, 2)
    assert _get(by_keyword.execute([9], x=6)) == ([9], 6)  # several inputs: inp[0] is the first one

    with InputNode() as inp:
        from_dict = pair.bind(inp["a"], inp["b"])
        from_object = pair.bind(inp.a, inp.b)
    assert _get(from_dict.execute({"a": 1, "b": 2})) == (1, 2)
    assert _get(from_object.execute(SimpleNamespace(a="x", b="y"))) == ("x", "y")
    assert _get(from_dict.execute(a=3, b=4)) == (3, 4)


def test_multi_output_node_returns_a_list_of_refs() -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([add.bind(inp["x"]), add.bind(inp["y"]), add.bind(inp["x"], inc=100)])
    refs = dag.execute({"x": 1, "y": 2})
    assert isinstance(refs, list) and all(isinstance(r, kray.ObjectRef) for r in refs)
    assert _get(refs) == [2, 3, 101]


def test_actor_dag_runs_each_actors_calls_in_bind_order() -> None:
    first = Accumulator.bind(10)
    assert isinstance(first, ClassNode)
    value = first.get.bind()
    assert isinstance(value, ClassMethodNode)
    assert _get(value.execute()) == 10
    second = Accumulator.bind(10)
    first.inc.bind(2)  # not referenced by the output, but part of the actor's call order
    first.inc.bind(4)
    second.inc.bind(6)
    dag = add.bind(first.get.bind(), inc=second.get.bind())
    assert _get(dag.execute()) == (10 + 2 + 4) + (10 + 6)
    history = first.history.bind()
    assert _get(history.execute()) == ["inc2", "inc4"]


def test_class_node_executes_to_a_new_actor_each_time() -> None:
    node = Accumulator.options(max_concurrency=1).bind(1)
    one = node.execute()
    two = node.execute()
    assert isinstance(one, kray.actor.ActorHandle) and isinstance(two, kray.actor.ActorHandle)
    assert one != two
    assert _get(one.inc.remote(5)) == 6
    assert _get(two.get.remote()) == 1


def test_methods_of_an_existing_actor_bind_and_keep_its_state() -> None:
    worker = Accumulator.remote(0)
    with InputNode() as inp:
        dag = MultiOutputNode([worker.inc.bind(inp)])
    assert _get(dag.execute(1)) == [1]
    assert _get(dag.execute(2)) == [3]
    assert _get(dag.execute(3)) == [6]
    assert _get(worker.get.remote()) == 6
    kray.kill(worker)


def test_options_on_nodes_and_bound_methods() -> None:
    @kray.remote
    def two_values(x: int) -> tuple[int, int]:
        return x, -x

    refs = two_values.options(num_returns=2).bind(4).execute()
    assert _get(list(refs)) == [4, -4]
    refs = two_values.bind(5).options(num_returns=2).execute()
    assert _get(list(refs)) == [5, -5]
    actor_node = Accumulator.bind(0)
    labelled = actor_node.inc.options(name="labelled-inc").bind(7)
    assert _get(labelled.execute()) == 7


def test_nodes_nested_in_lists_arrive_as_object_refs() -> None:
    dag = total_of.bind([add.bind(1), add.bind(2), add.bind(3)])
    assert _get(dag.execute()) == 2 + 3 + 4


def test_a_deep_chain_executes_without_recursion() -> None:
    node = add.bind(0)
    for _ in range(1200):  # deeper than Python's default recursion limit
        node = add.bind(node)
    assert _get(node.execute()) == 1201


def test_a_task_error_arrives_on_get() -> None:
    with InputNode() as inp:
        dag = add.bind(fail.bind(inp))
    with pytest.raises(KeyError, match="no such key 3") as info:
        _get(dag.execute(3))
    assert isinstance(info.value, exceptions.RayTaskError)


def test_misuse_gets_clear_errors() -> None:
    with pytest.raises(ValueError, match="InputNode takes no arguments"):
        InputNode(1)
    loose = InputNode()
    with pytest.raises(ValueError, match="context manager"):
        add.bind(loose).execute(1)
    with InputNode() as inp, pytest.raises(ValueError, match="constructor"):
        Accumulator.bind(inp)
    with InputNode() as inp, pytest.raises(TypeError, match="int index or a str key"):
        inp[1.5]  # type: ignore[index]
    node = Accumulator.bind(0)
    with pytest.raises(AttributeError, match="no method 'nope'"):
        node.nope  # noqa: B018
    with pytest.raises(AttributeError, match="cannot be used again"):
        node.bind  # noqa: B018
    with pytest.raises(AttributeError, match=r"\.remote\(\) cannot be used"):
        node.get.remote()
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(add.bind(1))
    with pytest.raises(TypeError, match="DAG nodes only"):
        MultiOutputNode([add.bind(1), 2])  # type: ignore[list-item]
    with InputNode() as inp:
        dag = pair.bind(inp[0], inp[3])
    with pytest.raises(ValueError, match="input field 3"):
        dag.execute(1, 2)
