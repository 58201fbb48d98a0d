#!/usr/bin/env bash
# smoke.sh — prove an appliance/llamacpp-cpu image serves the OpenAI API.
#
# Runs the image with `docker run -d -p 127.0.0.1:$PORT:8080`, waits (bounded)
# for GET /v1/models, sends POST /v1/chat/completions without and with
# streaming, checks the answers, prints timings, and always removes the
# container. Exit status 0 only if every check passed.
#
# Usage: deploy/engine-image/smoke.sh [IMAGE]   (default appliance/llamacpp-cpu:latest)
# Environment:
#   SMOKE_PORT           host port on 127.0.0.1 (default 18000)
#   SMOKE_READY_TIMEOUT  seconds to wait for /v1/models (default 120)
#   SMOKE_REQ_TIMEOUT    seconds allowed per chat request (default 120)
#   DOCKER_HOST          engine to use (default: the docker CLI's default)
set -euo pipefail

IMAGE=${1:-appliance/llamacpp-cpu:latest}
PORT=${SMOKE_PORT:-18000}
READY_TIMEOUT=${SMOKE_READY_TIMEOUT:-120}
REQ_TIMEOUT=${SMOKE_REQ_TIMEOUT:-120}
BASE="http://127.0.0.1:${PORT}"
NAME="engine-smoke-$$"
WORK=$(mktemp -d)

log() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
    log "FAIL: $*"
    log "container logs (tail):"
    docker logs --tail 40 "$NAME" >&2 2>&1 || true
    exit 1
}
cleanup() {
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
json() {  # json <file> <python expression over d>
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "image $IMAGE not found (run build.sh)"
ALIAS=$(docker image inspect --format '{{ index .Config.Labels "appliance.model.alias" }}' "$IMAGE")
[[ -n "$ALIAS" ]] || fail "image has no appliance.model.alias label"

t_start=$(now)
docker run -d --name "$NAME" -p "127.0.0.1:${PORT}:8080" "$IMAGE" >/dev/null \
    || fail "docker run failed"
log "started $NAME from $IMAGE on 127.0.0.1:$PORT"

# ---- readiness -----------------------------------------------------------------
deadline=$(( SECONDS + READY_TIMEOUT ))
until curl -fsS -m 5 -o "$WORK/models.json" "$BASE/v1/models" 2>/dev/null; do
    [[ "$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" == true ]] \
        || fail "container exited before becoming ready"
    (( SECONDS < deadline )) || fail "/v1/models not ready within ${READY_TIMEOUT}s"
    sleep 0.5
done
t_ready=$(since "$t_start")
model_id=$(json "$WORK/models.json" 'd["data"][0]["id"]')
[[ "$model_id" == "$ALIAS" ]] || fail "/v1/models lists '$model_id', expected '$ALIAS'"
log "ready after ${t_ready}s; model id: $model_id"

# ---- non-streaming chat ------------------------------------------------------
body() {  # body <stream:true|false> <max_tokens>
    printf '{"model":"%s","stream":%s,"max_tokens":%s,"temperature":0,"messages":[{"role":"user","content":"What is the capital of France? Answer in one short sentence."}]}' \
        "$ALIAS" "$1" "$2"
}
t0=$(now)
curl -fsS -m "$REQ_TIMEOUT" -H 'Content-Type: application/json' -d "$(body false 64)" \
    -o "$WORK/chat.json" "$BASE/v1/chat/completions" || fail "chat completion request failed"
t_chat=$(since "$t0")
answer=$(json "$WORK/chat.json" 'd["choices"][0]["message"]["content"].strip()')
ntok=$(json "$WORK/chat.json" 'd["usage"]["completion_tokens"]')
[[ -n "$answer" ]] || fail "empty chat answer: $(cat "$WORK/chat.json")"
[[ "$(json "$WORK/chat.json" 'd["object"]')" == chat.completion ]] || fail "wrong object type"
log "chat (non-stream) ${t_chat}s, ${ntok} tokens: ${answer}"

# ---- streaming chat -----------------------------------------------------------
t0=$(now)
curl -fsS -N -m "$REQ_TIMEOUT" -H 'Content-Type: application/json' -d "$(body true 64)" \
    -o "$WORK/stream.txt" "$BASE/v1/chat/completions" || fail "streaming request failed"
t_stream=$(since "$t0")
python3 - "$WORK/stream.txt" >"$WORK/stream.out" <<'PY' || fail "bad event stream: $(head -c 600 "$WORK/stream.txt")"
import json, sys
chunks, text, done = 0, [], False
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if not line.startswith("data:"):
        continue
    data = line[5:].strip()
    if data == "[DONE]":
        done = True
        break
    event = json.loads(data)
    assert event["object"] == "chat.completion.chunk", event
    chunks += 1
    text.append(event["choices"][0]["delta"].get("content") or "")
answer = "".join(text).strip()
assert done, "no [DONE] event"
assert chunks > 1 and answer, "no streamed content"
print(chunks, answer)
PY
read -r nchunks sanswer <"$WORK/stream.out"
log "chat (stream) ${t_stream}s, ${nchunks} chunks: ${sanswer}"

# ---- throughput -------------------------------------------------------------
t0=$(now)
curl -fsS -m "$REQ_TIMEOUT" -H 'Content-Type: application/json' \
    -d "$(printf '{"model":"%s","max_tokens":128,"temperature":0,"messages":[{"role":"user","content":"Write a short story about a robot who learns to paint."}]}' "$ALIAS")" \
    -o "$WORK/long.json" "$BASE/v1/chat/completions" || fail "throughput request failed"
t_long=$(since "$t0")
nlong=$(json "$WORK/long.json" 'd["usage"]["completion_tokens"]')
tps=$(awk -v n="$nlong" -v t="$t_long" 'BEGIN { printf "%.1f", n / t }')

docker rm -f "$NAME" >/dev/null
echo "---- smoke OK: $IMAGE ----"
echo "start -> /v1/models ready : ${t_ready}s"
echo "first chat completion     : ${t_chat}s (${ntok} tokens)"
echo "streamed chat completion  : ${t_stream}s (${nchunks} chunks)"
echo "generation                : ${nlong} tokens in ${t_long}s = ${tps} tokens/s (incl. prompt)"
