"""kray.dag: Ray's lazy DAG API (`.bind()` on remote functions, actor classes and actor methods,
`InputNode`, `MultiOutputNode`, `.execute()`).

Building a DAG does no I/O; `execute()` submits its tasks and actor calls as `.remote()` would.
"""

from kray.dag.class_node import ClassMethodNode, ClassNode
from kray.dag.dag_node import DAGNode
from kray.dag.function_node import FunctionNode
from kray.dag.input_node import DAGInputData, InputAttributeNode, InputNode
from kray.dag.output_node import MultiOutputNode

__all__ = [
    "ClassMethodNode",
    "ClassNode",
    "DAGInputData",
    "DAGNode",
    "FunctionNode",
    "InputAttributeNode",
    "InputNode",
    "MultiOutputNode",
]
