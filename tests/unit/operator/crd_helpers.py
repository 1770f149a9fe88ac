"""Paths and CRD helpers shared by the operator's unit tests: the CRD schemas as strict JSON Schema.

Pure: reads files of the repository only.
"""

from __future__ import annotations

import copy
import pathlib
import sys
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
CRDS = ROOT / "crds"
SAMPLES = CRDS / "samples"
CRD_FILES = {"RayCluster": CRDS / "raycluster.yaml", "RayJob": CRDS / "rayjob.yaml"}


def ensure_importable() -> None:
    """Make `import kray_operator` work from a bare checkout too (`make install` installs it)."""
    try:
        import kray_operator  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "operator"))


def load_yaml(path: pathlib.Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1, f"{path} should hold one document"
    return docs[0]


def crd_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of the CRD of `kind`."""
    crd = load_yaml(CRD_FILES[kind])
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A Kubernetes structural schema as JSON Schema, strict like `kubectl apply --validate=strict`.

    Objects with declared properties and neither x-kubernetes-preserve-unknown-fields nor
    additionalProperties reject unknown fields (the API server would prune them); `nullable` allows
    null; x-kubernetes-* extensions (CEL rules, list types) are dropped; int-or-string keeps its anyOf.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("description", "nullable", "format"):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        else:
            out[key] = copy.deepcopy(value)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out
