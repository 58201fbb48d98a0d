#!/usr/bin/env bash
# Start the console (manage.py serve: granian, CONSOLE_WORKERS processes, HTTP + WebSocket, static files),
# the Celery worker and Celery beat together; Ctrl-C stops all three. docs/serving.md has the settings.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin
# Loopback unless a host is given: the first run has a generated admin password and no TLS in front.
HOST=${CONSOLE_HOST:-127.0.0.1}
PORT=${CONSOLE_PORT:-8000}
NODE=${APPLIANCE_NODE_NAME:-$(hostname)}
# make run's admin line (a generated password on the first run): printed below the URL, never inherited.
admin_note=${CONSOLE_ADMIN_NOTE:-}
unset CONSOLE_ADMIN_NOTE
mkdir -p var/run
# Prometheus multi-process files of the previous run's processes would be summed with this run's.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/run/prometheus}
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "Stopping…"
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap cleanup INT TERM EXIT

$PY/python manage.py serve --host "$HOST" --port "$PORT" & pids+=($!)
$PY/celery -A workers.celery worker -l info -Q "${APPLIANCE_DEFAULT_QUEUE:-default},node.${NODE}" -n "worker@${NODE}" --concurrency 2 & pids+=($!)
$PY/celery -A workers.celery beat -l info -s var/run/celerybeat-schedule & pids+=($!)

shown=$HOST; [[ $HOST == *:* ]] && shown="[$HOST]"
for _ in $(seq 1 120); do
  $PY/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" \
    "http://${shown}:${PORT}/healthz" 2>/dev/null && break
  sleep 0.5
done
echo
echo "Console: http://${shown}:${PORT}/   (API docs: http://${shown}:${PORT}/api/docs/)"
[[ -n "$admin_note" ]] && echo "$admin_note"
echo "Sign in as ${ADMIN_USER:-admin}: the password is CONSOLE_ADMIN_PASSWORD, or the one generated and shown at the first run."
wait -n "${pids[@]}"
