#!/usr/bin/env bash
# build.sh — build the engine protocol doubles (docs/engines.md, "Protocol doubles") from the local base
# image appliance/debian-base:bookworm (deploy/engine-image/build.sh --only base), with no network.
#
# Usage: deploy/engine-doubles/build.sh [ollama|vllm]...   (default: both)
# Prints one line per image: <kind>=<tag>. DOCKER_HOST picks the engine, as for the docker CLI.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
export DOCKER_BUILDKIT=0   # classic builder: no buildx plugin, no frontend image pull
VERSIONS=$(cd "$REPO_ROOT" && python3 -c 'import importlib.util as u, sys
s = u.spec_from_file_location("flags", "appliance/engines/flags.py"); f = u.module_from_spec(s)
sys.modules["flags"] = f; s.loader.exec_module(f); print(f.OLLAMA_VERSION, f.VLLM_VERSION)')
read -r OLLAMA_VERSION VLLM_VERSION <<<"$VERSIONS"

docker image inspect appliance/debian-base:bookworm >/dev/null 2>&1 || {
    echo "build.sh: appliance/debian-base:bookworm is missing on this engine; build or load it first" >&2
    exit 1
}
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
for kind in "${@:-ollama vllm}"; do
    for k in $kind; do
        case "$k" in
            ollama) tag="appliance-doubles/ollama:$OLLAMA_VERSION" ;;
            vllm) tag="appliance-doubles/vllm:v$VLLM_VERSION" ;;
            *) echo "build.sh: unknown double: $k" >&2; exit 2 ;;
        esac
        rm -rf "${context:?}/$k" && mkdir "$context/$k"
        cp "$HERE/$k"/* "$HERE/common/doublehttp.py" "$context/$k/"
        [[ $k == vllm ]] && cp "$REPO_ROOT/appliance/engines/flags.py" "$context/$k/"
        docker build -q -t "$tag" "$context/$k" >/dev/null
        echo "$k=$tag"
    done
done
