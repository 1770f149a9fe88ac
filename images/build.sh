#!/usr/bin/env bash
# Builds kray's container images: kray:latest (runtime) and kray-operator:latest (operator on top).
# Called by `make images`; run from anywhere. Needs docker (with a running daemon) or podman.
# Both images are also tagged with a content hash of what goes into them (the Dockerfiles, pyproject.toml,
# README.md, runtime/, operator/ and compat/ sources, the base image's id): kray:h-<12 hex>. The last lines on
# stdout name the images built, `KRAY_IMAGE=<ref>` and `KRAY_OPERATOR_IMAGE=<ref>`; logs go to stderr.
#
# Options:
#   --if-changed  build only when no image of this content hash exists (seconds for an unchanged tree);
#                 older h-* tags are removed after a build
#   --if-engine   with no working container engine, say so and exit 0 instead of failing (make test)
#
# Environment (all optional):
#   KRAY_CONTAINER_ENGINE  docker | podman (default: docker if its daemon answers, else podman;
#                          docker first because kind, used by `make e2e-kind`, loads images from it)
#   KRAY_BASE_IMAGE        base of the runtime image (default: python:3.11-slim when it can be pulled,
#                          else localhost/kray-base:bookworm, built with mmdebstrap if it is missing)
#   KRAY_IMAGE_TAG         tag of both images (default: latest)
#   KRAY_BUILD_CA          CA bundle that pip trusts during the build only (default: the host's
#                          /etc/ssl/certs/ca-certificates.crt when present); never copied into an image
#   KRAY_CACHE_DIR         cache outside the clone (default: ~/.cache/kray); the base rootfs tarball
#                          lives in $KRAY_CACHE_DIR/images
set -euo pipefail
shopt -s inherit_errexit  # errors inside $(...) stop the script too

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${KRAY_IMAGE_TAG:-latest}"
cache="${KRAY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kray}/images"
local_base="localhost/kray-base:bookworm"
registry_base="docker.io/library/python:3.11-slim"  # fully qualified: podman may not resolve short names

log() { echo "images: $*" >&2; }
die() { echo "images: error: $*" >&2; exit 1; }

if_changed=0 if_engine=0
for arg in "$@"; do
    case "$arg" in
        --if-changed) if_changed=1 ;;
        --if-engine) if_engine=1 ;;
        *) die "unknown option $arg (see the head of $0)" ;;
    esac
done

# --- the container engine ------------------------------------------------------------------------
engine_works() {
    case "$1" in
        docker) command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1 ;;
        podman) command -v podman >/dev/null 2>&1 && timeout 20 podman info >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

pick_engine() {
    if [[ -n "${KRAY_CONTAINER_ENGINE:-}" ]]; then
        engine_works "$KRAY_CONTAINER_ENGINE" || {
            echo "images: KRAY_CONTAINER_ENGINE=$KRAY_CONTAINER_ENGINE does not work here" \
                 "(is it installed, and its daemon running?)" >&2
            exit 2
        }
        echo "$KRAY_CONTAINER_ENGINE"
        return
    fi
    local candidate
    for candidate in docker podman; do
        if engine_works "$candidate"; then echo "$candidate"; return; fi
    done
    if (( if_engine )); then
        echo "images: no working container engine here: images not built (the container-mode tests will" \
             "fail; install podman, as .ci/run does)" >&2
        echo none
        return
    fi
    cat >&2 <<'EOF'
images: no working container engine: install podman (e.g. `apt-get install podman buildah runc
images: uidmap fuse-overlayfs slirp4netns`) or Docker with a running daemon, then run `make images` again.
EOF
    exit 2
}

# podman on a machine without systemd (a container, a CI VM) needs the project's containers.conf:
# runc, cgroupfs, file events and ulimits that fit (see the comments in images/containers.conf).
configure_podman() {
    if [[ -z "${CONTAINERS_CONF:-}" && ! -d /run/systemd/system ]]; then
        export CONTAINERS_CONF="$repo/images/containers.conf"
        log "no systemd here: using CONTAINERS_CONF=$CONTAINERS_CONF"
    fi
}

image_exists() {
    if [[ "$engine" == podman ]]; then
        podman image exists "$1"
    else
        docker image inspect "$1" >/dev/null 2>&1
    fi
}

# --- the base image --------------------------------------------------------------------------------
# A Debian bookworm root filesystem with python3 (3.11) from Debian's packages, for machines that
# reach Debian's mirror but no container registry. The tarball is cached outside the clone.
build_local_base() {
    local tarball="$cache/kray-base-bookworm.tar"
    if [[ ! -s "$tarball" ]]; then
        command -v mmdebstrap >/dev/null 2>&1 \
            || die "no registry to pull $registry_base from and no mmdebstrap to build $local_base;" \
                   "install mmdebstrap (apt-get install mmdebstrap) or set KRAY_BASE_IMAGE"
        mkdir -p "$cache"
        log "building the base rootfs with mmdebstrap into $tarball (about a minute)"
        local started=$SECONDS
        mmdebstrap --variant=apt --include=python3,python3-venv,ca-certificates,passwd \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-include=/usr/share/locale/locale.alias' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            bookworm "$cache/partial.tar" >&2  # the .tar suffix picks mmdebstrap's output format
        mv "$cache/partial.tar" "$tarball"
        log "base rootfs built in $((SECONDS - started)) s"
    else
        log "reusing the cached base rootfs $tarball"
    fi
    "$engine" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/usr/bin/python3"]' \
        "$tarball" "$local_base" >/dev/null
    log "imported $local_base"
}

pick_base() {
    if [[ -n "${KRAY_BASE_IMAGE:-}" ]]; then echo "$KRAY_BASE_IMAGE"; return; fi
    if image_exists "$registry_base"; then echo "$registry_base"; return; fi
    # Built here only once the registry was out of reach: do not wait on the registry again.
    if image_exists "$local_base"; then echo "$local_base"; return; fi
    if timeout 120 "$engine" pull -q "$registry_base" >/dev/null 2>&1; then
        echo "$registry_base"; return
    fi
    log "cannot pull $registry_base (no registry?): using $local_base"
    image_exists "$local_base" || build_local_base
    echo "$local_base"
}

# --- building ----------------------------------------------------------------------------------------
# The CA reaches pip as a build secret (podman/buildah and Docker BuildKit both mount it at
# /run/secrets/hostca for the RUN steps that ask for it); it is in no layer of the images.
ca_args=()
ca="${KRAY_BUILD_CA-/etc/ssl/certs/ca-certificates.crt}"
if [[ -n "$ca" && -s "$ca" ]]; then
    ca_args=(--secret "id=hostca,src=$ca")
fi

build() {  # build NAME DOCKERFILE BUILD-ARG...
    local name="$1" dockerfile="$2"; shift 2
    local args=() a started=$SECONDS
    for a in "$@"; do args+=(--build-arg "$a"); done
    log "building $name from $dockerfile"
    "$engine" build -f "$repo/$dockerfile" -t "$name" "${args[@]}" "${ca_args[@]}" "$repo"
    log "built $name in $((SECONDS - started)) s"
}

# --- the content hash ------------------------------------------------------------------------------
# Every file that goes into the images (tracked or new, never ignored ones such as __pycache__), by path
# and content, plus the base image's id.
content_hash() {
    local files
    if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        files="$(git -C "$repo" ls-files --cached --others --exclude-standard -- "${inputs[@]}")"
    else
        files="$(cd "$repo" && find "${inputs[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc')"
    fi
    {
        (cd "$repo" && LC_ALL=C sort -u <<<"$files" | while IFS= read -r f; do
            [[ -f "$f" ]] && printf '%s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
        done)
        echo "base $("$engine" image inspect --format '{{.Id}}' "$base")"
    } | sha256sum | cut -c1-12
}
keep_tags=3
inputs=(images/runtime.Dockerfile images/operator.Dockerfile pyproject.toml README.md runtime operator compat)

qualified() {  # the name the engine lists an image under
    if [[ "$engine" == podman ]]; then echo "localhost/$1"; else echo "$1"; fi
}

engine="$(pick_engine)"
if [[ "$engine" == none ]]; then exit 0; fi
[[ "$engine" == podman ]] && configure_podman
[[ "$engine" == docker ]] && export DOCKER_BUILDKIT=1  # RUN --mount=type=secret needs BuildKit
log "engine: $engine"

# One build at a time on this machine (test sessions may call this concurrently).
mkdir -p "$cache"
exec 9>"$cache/build.lock"
flock 9

base="$(pick_base)"
hash_tag="h-$(content_hash)"
if (( if_changed )) && image_exists "kray:$hash_tag" && image_exists "kray-operator:$hash_tag"; then
    log "kray:$hash_tag and kray-operator:$hash_tag are up to date (content hash unchanged)"
else
    build "kray:$hash_tag" images/runtime.Dockerfile "BASE=$base"
    build "kray-operator:$hash_tag" images/operator.Dockerfile "RUNTIME_IMAGE=kray:$hash_tag"
    if (( if_changed )); then
        # Keep the newest few hash tags per image: test sessions of a tree edited meanwhile may still start
        # pods from theirs. Engines list the newest first; rmi takes the untagged parents along. No prune:
        # the untagged images of the deps stage are the build cache that makes a rebuild take seconds.
        for name in kray kray-operator; do
            "$engine" images --format '{{.Repository}}:{{.Tag}}' \
                | grep -E "(^|/)$name:h-[0-9a-f]{12}\$" | tail -n +$((keep_tags + 1)) \
                | xargs -r "$engine" rmi >/dev/null 2>&1 || true
        done
    fi
fi
"$engine" tag "kray:$hash_tag" "kray:$tag"
"$engine" tag "kray-operator:$hash_tag" "kray-operator:$tag"
"$engine" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "(^|/)kray(-operator)?:$hash_tag " >&2 || true
echo "KRAY_IMAGE=$(qualified "kray:$hash_tag")"
echo "KRAY_OPERATOR_IMAGE=$(qualified "kray-operator:$hash_tag")"
