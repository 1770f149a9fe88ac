"""Fixtures of the operator's unit tests: samples, models, the CRD schemas as JSON Schema, helm.

Everything here is pure except `helm`, which runs tools/fetch_helm.sh once per session.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import crd_helpers
import jsonschema
import pytest

crd_helpers.ensure_importable()

from kray_operator import job_models, models


@pytest.fixture(scope="session")
def crd_validate() -> Callable[[dict[str, Any]], list[str]]:
    """validate(doc) -> list of 'path: message' errors of a RayCluster/RayJob against its CRD."""
    validators = {
        kind: jsonschema.Draft202012Validator(crd_helpers.to_json_schema(crd_helpers.crd_schema(kind)))
        for kind in crd_helpers.CRD_FILES
    }

    def validate(doc: dict[str, Any]) -> list[str]:
        validator = validators[doc["kind"]]
        return [
            f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
            for error in validator.iter_errors(doc)
        ]

    return validate


@pytest.fixture
def cluster_doc() -> dict[str, Any]:
    """The sample RayCluster as the API server would return it (namespace, uid, generation set)."""
    doc = crd_helpers.load_yaml(crd_helpers.SAMPLES / "raycluster.yaml")
    doc["metadata"].update(namespace="ns1", uid="uid-cluster", generation=3)
    return doc


@pytest.fixture
def cluster(cluster_doc: dict[str, Any]) -> models.RayCluster:
    return models.RayCluster.model_validate(cluster_doc)


@pytest.fixture
def job_doc() -> dict[str, Any]:
    """The sample RayJob as the API server would return it."""
    doc = crd_helpers.load_yaml(crd_helpers.SAMPLES / "rayjob.yaml")
    doc["metadata"].update(namespace="ns1", uid="uid-job", generation=1)
    return doc


@pytest.fixture
def job(job_doc: dict[str, Any]) -> job_models.RayJob:
    return job_models.RayJob.model_validate(job_doc)


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of a helm binary, fetched by tools/fetch_helm.sh (fails, never skips, when it cannot)."""
    result = subprocess.run(
        ["bash", str(crd_helpers.ROOT / "tools" / "fetch_helm.sh")], capture_output=True, text=True, check=False, timeout=600
    )
    if result.returncode != 0:
        pytest.fail(f"tools/fetch_helm.sh failed ({result.returncode}):\n{result.stderr}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]
