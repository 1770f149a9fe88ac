"""Keep the CRDs in step: embed RayCluster's spec and status schemas into RayJob's rayClusterSpec and
rayClusterStatus (crds/rayjob.yaml), then copy crds/*.yaml into the Helm chart.

Run after editing crds/raycluster.yaml: `python tools/sync_crds.py` (`--check` only reports). Reads and
writes files of the repository; the embedding is textual, so the rest of rayjob.yaml keeps its layout.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRDS = ROOT / "crds"
HELM_CRDS = ROOT / "helm" / "kray-operator" / "crds"
# Where the RayCluster schema's `spec` and `status` sit in raycluster.yaml, and where they go in rayjob.yaml.
CLUSTER_INDENT = 10
JOB_INDENT = 14


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block(lines: list[str], key: str, indent: int) -> tuple[int, int]:
    """[start, end) of the mapping entry `key:` at `indent` spaces: its line and everything nested under it."""
    head = " " * indent + key + ":"
    start = next(i for i, line in enumerate(lines) if line.rstrip() == head)
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > indent
                                or lines[end].lstrip().startswith("- ") and _indent(lines[end]) == indent):
        end += 1
    return start, end


def _embedded(cluster: list[str], key: str, new_key: str, description: str) -> list[str]:
    """The RayCluster `key` block re-indented for rayjob.yaml, renamed and with rayjob's description line."""
    start, end = _block(cluster, key, CLUSTER_INDENT)
    shift = " " * (JOB_INDENT - CLUSTER_INDENT)
    body = [shift + line if line.strip() else line for line in cluster[start + 1:end]]
    # Drop the RayCluster's own description (it may span lines), keep the RayJob's.
    if body and body[0].lstrip().startswith("description:"):
        first = _indent(body[0])
        skip = 1
        while skip < len(body) and _indent(body[skip]) > first:
            skip += 1
        body = body[skip:]
    return [" " * JOB_INDENT + new_key + ":\n", *description, *body]


def _description(lines: list[str], start: int) -> list[str]:
    """The description lines right under the entry at `start` (empty when it has none)."""
    line = lines[start + 1]
    if not line.lstrip().startswith("description:"):
        return []
    out = [line]
    for nxt in lines[start + 2:]:
        if _indent(nxt) <= _indent(line):
            break
        out.append(nxt)
    return out


def synced_rayjob() -> str:
    """rayjob.yaml with the RayCluster schemas embedded as they are in raycluster.yaml now."""
    cluster = (CRDS / "raycluster.yaml").read_text().splitlines(keepends=True)
    job = (CRDS / "rayjob.yaml").read_text().splitlines(keepends=True)
    for cluster_key, job_key in (("spec", "rayClusterSpec"), ("status", "rayClusterStatus")):
        start, end = _block(job, job_key, JOB_INDENT)
        job[start:end] = _embedded(cluster, cluster_key, job_key, _description(job, start))
    return "".join(job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether anything is out of step")
    args = parser.parse_args(argv)
    target = CRDS / "rayjob.yaml"
    new = synced_rayjob()
    stale = [target] if new != target.read_text() else []
    stale += [HELM_CRDS / p.name for p in sorted(CRDS.glob("*.yaml"))
              if p.name != "rayjob.yaml" and (HELM_CRDS / p.name).read_text() != p.read_text()]
    if (HELM_CRDS / "rayjob.yaml").read_text() != new:
        stale.append(HELM_CRDS / "rayjob.yaml")
    if args.check:
        for path in stale:
            print(f"out of step: {path.relative_to(ROOT)}")
        return 1 if stale else 0
    target.write_text(new)
    for path in sorted(CRDS.glob("*.yaml")):
        shutil.copyfile(path, HELM_CRDS / path.name)
    for path in stale:
        print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
