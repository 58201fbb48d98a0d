#!/usr/bin/env bash
# Start web (daphne), Celery worker and Celery beat together; Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin
HOST=${CONSOLE_HOST:-127.0.0.1}
PORT=${CONSOLE_PORT:-8000}
NODE=${APPLIANCE_NODE_NAME:-$(hostname)}
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

$PY/daphne -b "$HOST" -p "$PORT" console.asgi:application & pids+=($!)
$PY/celery -A workers.celery worker -l info -Q "${APPLIANCE_DEFAULT_QUEUE:-default},node.${NODE}" -n "worker@${NODE}" --concurrency 2 & pids+=($!)
$PY/celery -A workers.celery beat -l info -s var/run/celerybeat-schedule & pids+=($!)

echo "Console: http://${HOST}:${PORT}/  (API docs: http://${HOST}:${PORT}/api/docs/)"
wait -n "${pids[@]}"
