#!/usr/bin/env bash
# `make e2e-kind`: kray on a real kind cluster, for machines with Docker, kind, helm and kubectl.
# Builds the images, loads them into a fresh kind cluster, installs the operator with Helm, applies
# crds/samples/raycluster.yaml, waits for it to be ready, and runs a driver in the head pod that must
# see every pod as a node; then applies crds/samples/rayjob.yaml as a CI step would (kubectl wait for
# Complete, kubectl logs of the submitter). Deletes the kind cluster at the end (KRAY_E2E_KEEP=1 keeps it).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cluster="${KRAY_E2E_CLUSTER:-kray-e2e}"
ns=kray-e2e
log() { echo "e2e-kind: $*" >&2; }

for tool in docker kind helm kubectl; do
    command -v "$tool" >/dev/null 2>&1 || { log "needs $tool on PATH (this target is for a machine with Docker and kind)"; exit 2; }
done

cleanup() {
    if [[ -z "${KRAY_E2E_KEEP:-}" ]]; then kind delete cluster --name "$cluster" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

KRAY_CONTAINER_ENGINE=docker bash "$repo/images/build.sh"
kind create cluster --name "$cluster" --wait 120s
kind load docker-image --name "$cluster" kray:latest kray-operator:latest
kubectl="kubectl --context kind-$cluster"

helm --kube-context "kind-$cluster" install kray-operator "$repo/helm/kray-operator" \
    --namespace kray-system --create-namespace --set image.tag=latest --wait --timeout 180s
$kubectl create namespace "$ns"
$kubectl apply -n "$ns" -f "$repo/crds/samples/raycluster.yaml"

log "waiting for RayCluster raycluster-sample to be ready"
for _ in $(seq 180); do
    state="$($kubectl get -n "$ns" raycluster raycluster-sample -o jsonpath='{.status.state}' 2>/dev/null || true)"
    [[ "$state" == ready ]] && break
    sleep 2
done
[[ "$state" == ready ]] || { $kubectl describe -n "$ns" raycluster raycluster-sample; log "not ready: '$state'"; exit 1; }

head="$($kubectl get pods -n "$ns" -l kray.io/cluster=raycluster-sample,kray.io/node-type=head -o name)"
$kubectl exec -n "$ns" "$head" -- python -c '
import kray
kray.init()
@kray.remote
def where():
    return kray.get_runtime_context().get_node_id()
nodes = {n["NodeID"] for n in kray.nodes() if n["Alive"]}
ran = set(kray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(4 * len(nodes))]))
assert len(nodes) == 2 and ran == nodes, (nodes, ran)
print(f"e2e-kind: {len(nodes)} nodes, tasks ran on every one")
'
log "RayJob rayjob-sample: apply, wait for Complete, read its logs"
$kubectl apply -n "$ns" -f "$repo/crds/samples/rayjob.yaml"
if ! $kubectl wait -n "$ns" --for=jsonpath='{.status.jobDeploymentStatus}'=Complete rayjob/rayjob-sample --timeout=600s; then
    $kubectl describe -n "$ns" rayjob rayjob-sample; $kubectl logs -n "$ns" job/rayjob-sample || true; exit 1
fi
$kubectl logs -n "$ns" job/rayjob-sample | grep -q "hello from a RayJob" || { log "no job output in the submitter's log"; exit 1; }
$kubectl get -n "$ns" rayjob rayjob-sample
log "passed"
