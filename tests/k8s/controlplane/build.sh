#!/usr/bin/env bash
# Builds the k8s test tier's control plane (etcd, kube-apiserver, kube-controller-manager) from the
# Go module proxy, at the version pinned in go.mod, into a per-version cache outside the clone.
#
#   bash tests/k8s/controlplane/build.sh        (what `make k8s-env` runs)
#
# - KUBEBUILDER_ASSETS set: those binaries are used as they are; nothing is built.
# - Otherwise binaries go to ${KRAY_K8S_ENV_CACHE:-${XDG_CACHE_HOME:-~/.cache}/kray/k8s-env}/<version>/bin
#   and are built only when missing (cold ~8.5 min on 2 cores, seconds when present).
# Go's module and build caches stay in their default places. launcher.py finds the binaries the same way.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
binaries=(etcd kube-apiserver kube-controller-manager)

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    for b in "${binaries[@]}"; do
        if [[ ! -x "$KUBEBUILDER_ASSETS/$b" ]]; then
            echo "k8s-env: KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b;" \
                 "unset it to build the pinned binaries instead" >&2
            exit 1
        fi
    done
    echo "k8s-env: using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS (nothing built)"
    exit 0
fi

version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")"
if [[ -z "$version" ]]; then
    echo "k8s-env: cannot read the k8s.io/kubernetes version from $here/go.mod" >&2
    exit 1
fi
cache_root="${KRAY_K8S_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kray/k8s-env}"
bin_dir="$cache_root/$version/bin"
mkdir -p "$bin_dir"

missing=()
for b in "${binaries[@]}"; do
    [[ -x "$bin_dir/$b" ]] || missing+=("$b")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "k8s-env: $version binaries present in $bin_dir"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "k8s-env: Go is needed to build ${missing[*]} (https://go.dev/dl/), or set KUBEBUILDER_ASSETS" >&2
    exit 1
fi

# One builder at a time per cache (a CI job and a developer may share the machine).
exec 9>"$cache_root/$version/.build.lock"
flock 9
missing=()
for b in "${binaries[@]}"; do
    [[ -x "$bin_dir/$b" ]] || missing+=("$b")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "k8s-env: $version binaries present in $bin_dir (built by another run)"
    exit 0
fi

minor="${version#v}"; minor="${minor#*.}"; minor="${minor%%.*}"
major="${version#v}"; major="${major%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
done

staging="$(mktemp -d "$cache_root/$version/.staging.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
targets=()
for b in "${missing[@]}"; do targets+=("./cmd/$b"); done

echo "k8s-env: building ${missing[*]} $version into $bin_dir (about 8.5 min on 2 cores when cold)"
start=$(date +%s)
(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$staging/" "${targets[@]}")
for b in "${missing[@]}"; do
    mv -f "$staging/$b" "$bin_dir/$b"
done
echo "k8s-env: built ${missing[*]} in $(( $(date +%s) - start )) s"
"$bin_dir/kube-apiserver" --version
