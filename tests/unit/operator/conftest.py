"""Fixtures of the operator's unit tests: samples, models, the CRD schemas as JSON Schema, helm.

Everything here is pure except `helm`, which runs tools/fetch_helm.sh once per session.
"""

from __future__ import annotations

import copy
import pathlib
import subprocess
import sys
from typing import Any, Callable, Dict, List

import jsonschema
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
try:
    import kray_operator  # noqa: F401  (installed by `make install`)
except ImportError:  # a bare checkout: import from the source tree
    sys.path.insert(0, str(ROOT / "operator"))

from kray_operator import models  # noqa: E402

CRDS = ROOT / "crds"
SAMPLES = CRDS / "samples"
CRD_FILES = {"RayCluster": CRDS / "raycluster.yaml", "RayJob": CRDS / "rayjob.yaml"}


def load_yaml(path: pathlib.Path) -> Dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1, f"{path} should hold one document"
    return docs[0]


def crd_schema(kind: str) -> Dict[str, Any]:
    """The openAPIV3Schema of the CRD of `kind`."""
    crd = load_yaml(CRD_FILES[kind])
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def to_json_schema(node: Dict[str, Any]) -> Dict[str, Any]:
    """A Kubernetes structural schema as JSON Schema, strict like `kubectl apply --validate=strict`.

    Objects with declared properties and neither x-kubernetes-preserve-unknown-fields nor
    additionalProperties reject unknown fields (the API server would prune them); `nullable` allows
    null; x-kubernetes-* extensions (CEL rules, list types) are dropped; int-or-string keeps its anyOf.
    """
    out: Dict[str, Any] = {}
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


@pytest.fixture(scope="session")
def crd_validate() -> Callable[[Dict[str, Any]], List[str]]:
    """validate(doc) -> list of 'path: message' errors of a RayCluster/RayJob against its CRD."""
    validators = {
        kind: jsonschema.Draft202012Validator(to_json_schema(crd_schema(kind))) for kind in CRD_FILES
    }

    def validate(doc: Dict[str, Any]) -> List[str]:
        validator = validators[doc["kind"]]
        return [
            f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
            for error in validator.iter_errors(doc)
        ]

    return validate


@pytest.fixture
def cluster_doc() -> Dict[str, Any]:
    """The sample RayCluster as the API server would return it (namespace, uid, generation set)."""
    doc = load_yaml(SAMPLES / "raycluster.yaml")
    doc["metadata"].update(namespace="ns1", uid="uid-cluster", generation=3)
    return doc


@pytest.fixture
def cluster(cluster_doc: Dict[str, Any]) -> models.RayCluster:
    return models.RayCluster.model_validate(cluster_doc)


@pytest.fixture
def job_doc() -> Dict[str, Any]:
    """The sample RayJob as the API server would return it."""
    doc = load_yaml(SAMPLES / "rayjob.yaml")
    doc["metadata"].update(namespace="ns1", uid="uid-job", generation=1)
    return doc


@pytest.fixture
def job(job_doc: Dict[str, Any]) -> models.RayJob:
    return models.RayJob.model_validate(job_doc)


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of a helm binary, fetched by tools/fetch_helm.sh (fails, never skips, when it cannot)."""
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "fetch_helm.sh")], capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        pytest.fail(f"tools/fetch_helm.sh failed ({result.returncode}):\n{result.stderr}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]
