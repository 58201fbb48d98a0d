#!/usr/bin/env bash
# ensure-dockerd.sh — make a working Docker engine available on this machine.
#
# Idempotent. If the engine answers `docker info`, nothing is done. Otherwise:
#   * installs Debian's `docker.io` with apt-get when `dockerd` is missing
#     (a bare `docker` client in /usr/local/bin does not count as an engine);
#   * starts `dockerd` in the background (no systemd needed) and waits, bounded,
#     until `docker info` answers.
#
# Usage:
#   deploy/docker/ensure-dockerd.sh                 # the default engine
#   deploy/docker/ensure-dockerd.sh --name node2    # a SECOND, independent engine
#   eval "$(deploy/docker/ensure-dockerd.sh --name node2)"
#
# Options:
#   --name NAME        start an extra engine called NAME (default: the main one)
#                      socket    unix:///run/docker-NAME.sock
#                      data root /var/lib/docker-NAME
#                      exec root /run/docker-NAME, pidfile /run/docker-NAME.pid
#                      bridge    br-NAME with its own /24 (see --bip)
#                      log       /var/log/dockerd-NAME.log
#   --data-root DIR    override the data root
#   --host URI         override the socket (unix:///path.sock)
#   --bip CIDR         bridge address of an extra engine (default derived from NAME,
#                      inside 10.213.0.0/16; the main engine keeps docker0)
#   --timeout SEC      how long to wait for `docker info` (default 60)
#
# Environment:
#   DOCKERD_IPTABLES   auto (default) | true | false. auto: the main engine
#                      uses iptables if `iptables -t nat -L` works, else
#                      --iptables=false; an extra engine (--name) always runs
#                      with --iptables=false --ip-masq=false. Published ports
#                      still work through docker-proxy (the userland proxy).
#
# stdout carries exactly one line, `export DOCKER_HOST=<uri>`; progress and
# errors go to stderr.
set -euo pipefail

NAME=""
DATA_ROOT=""
HOST_URI=""
BIP=""
TIMEOUT=60

die() { echo "ensure-dockerd: ERROR: $*" >&2; exit 1; }
log() { echo "ensure-dockerd: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --name) NAME="${2:?--name needs a value}"; shift 2 ;;
        --data-root) DATA_ROOT="${2:?}"; shift 2 ;;
        --host) HOST_URI="${2:?}"; shift 2 ;;
        --bip) BIP="${2:?}"; shift 2 ;;
        --timeout) TIMEOUT="${2:?}"; shift 2 ;;
        -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done

if [[ -n "$NAME" && ! "$NAME" =~ ^[a-z0-9][a-z0-9-]{0,10}$ ]]; then
    die "--name must match [a-z0-9][a-z0-9-]{0,10} (it becomes a bridge name)"
fi

if [[ -z "$NAME" ]]; then
    : "${HOST_URI:=unix:///var/run/docker.sock}"
    : "${DATA_ROOT:=/var/lib/docker}"
    EXEC_ROOT=/var/run/docker
    PIDFILE=/var/run/docker.pid
    LOGFILE=/var/log/dockerd.log
else
    : "${HOST_URI:=unix:///run/docker-${NAME}.sock}"
    : "${DATA_ROOT:=/var/lib/docker-${NAME}}"
    EXEC_ROOT="/run/docker-${NAME}"
    PIDFILE="/run/docker-${NAME}.pid"
    LOGFILE="/var/log/dockerd-${NAME}.log"
    BRIDGE="br-${NAME}"
    if [[ -z "$BIP" ]]; then
        # A stable third octet in 1..254 derived from the name.
        octet=$(( $(printf '%s' "$NAME" | cksum | cut -d' ' -f1) % 254 + 1 ))
        BIP="10.213.${octet}.1/24"
    fi
fi

emit_env() { echo "export DOCKER_HOST=${HOST_URI}"; }

engine_up() { DOCKER_HOST="$HOST_URI" timeout 10 docker info >/dev/null 2>&1; }

if engine_up; then
    log "engine already running at ${HOST_URI}"
    emit_env
    exit 0
fi

[[ "$(id -u)" -eq 0 ]] || die "not running as root and no engine answers at ${HOST_URI}"

# --- install --------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then
    log "dockerd not found: installing Debian's docker.io (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    # docker.io pulls containerd, runc, tini and iptables.
    apt-get install -y -qq --no-install-recommends docker.io >&2 \
        || die "apt-get install docker.io failed"
fi
command -v dockerd >/dev/null 2>&1 || die "dockerd still missing after install"
command -v docker >/dev/null 2>&1 || die "no docker client found"

# --- iptables ---------------------------------------------------------------
# The main engine uses iptables when it works here (NAT for outbound traffic,
# port publishing in the kernel). An extra engine never does: two daemons
# rewriting the same DOCKER chains would fight. Without iptables, published
# ports still work on the host through docker-proxy (the userland proxy).
IPTABLES_FLAG=()
want_iptables=${DOCKERD_IPTABLES:-auto}
if [[ -n "$NAME" && "$want_iptables" == auto ]]; then
    want_iptables=false
fi
case "$want_iptables" in
    true) ;;
    false) IPTABLES_FLAG=(--iptables=false --ip-masq=false) ;;
    auto)
        if ! command -v iptables >/dev/null 2>&1 || ! iptables -t nat -L -n >/dev/null 2>&1; then
            log "iptables unusable here: starting dockerd with --iptables=false"
            IPTABLES_FLAG=(--iptables=false --ip-masq=false)
        fi ;;
    *) die "DOCKERD_IPTABLES must be auto, true or false" ;;
esac

# --- cgroups (machines without systemd may have no cgroup mounts at all) ----
if [[ ! -e /sys/fs/cgroup/cgroup.controllers && ! -d /sys/fs/cgroup/memory ]]; then
    if command -v cgroupfs-mount >/dev/null 2>&1; then
        log "mounting cgroups with cgroupfs-mount"
        cgroupfs-mount >&2 || log "cgroupfs-mount failed; dockerd may still cope"
    fi
fi

# --- start -----------------------------------------------------------------
sock_path="${HOST_URI#unix://}"
if [[ -f "$PIDFILE" ]]; then
    oldpid=$(cat "$PIDFILE" 2>/dev/null || true)
    if [[ -n "$oldpid" ]] && kill -0 "$oldpid" 2>/dev/null; then
        log "dockerd (pid $oldpid, $PIDFILE) is running but not answering yet; waiting"
    else
        log "removing stale pidfile $PIDFILE"
        rm -f "$PIDFILE"
    fi
fi

if [[ ! -f "$PIDFILE" ]]; then
    args=(
        --host "$HOST_URI"
        --data-root "$DATA_ROOT"
        --exec-root "$EXEC_ROOT"
        --pidfile "$PIDFILE"
        "${IPTABLES_FLAG[@]}"
    )
    if [[ -n "$NAME" ]]; then
        # Own bridge, so the extra engine never touches docker0. dockerd only
        # creates docker0 itself; a custom --bridge must already exist.
        other=$(ip -4 -o addr show | awk -v a="${BIP%/*}" -v br="$BRIDGE" \
            '{ split($4, p, "/") } p[1] == a && $2 != br { print $2 }')
        if [[ -n "$other" ]]; then
            die "$BIP is already on $other; choose another subnet with --bip"
        fi
        if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
            ip link add name "$BRIDGE" type bridge || die "cannot create bridge $BRIDGE"
        fi
        if ! ip -4 addr show dev "$BRIDGE" | grep -q "inet ${BIP}"; then
            ip addr add "$BIP" dev "$BRIDGE" || die "cannot set $BIP on $BRIDGE"
        fi
        ip link set "$BRIDGE" up
        # --bridge and --bip are mutually exclusive; the address comes from the
        # bridge itself. --fixed-cidr keeps container addresses inside it.
        args+=(--bridge "$BRIDGE" --fixed-cidr "$BIP")
        # Keep the per-engine containerd under the engine's own exec root.
        mkdir -p "$EXEC_ROOT"
    fi
    mkdir -p "$DATA_ROOT" "$(dirname "$sock_path")" "$(dirname "$LOGFILE")"
    log "starting dockerd ${args[*]} (log: $LOGFILE)"
    # setsid + nohup: survives this shell, CI's step and a closed terminal.
    setsid nohup dockerd "${args[@]}" >>"$LOGFILE" 2>&1 </dev/null &
    echo "$!" >"${PIDFILE}.launcher"
fi

# --- wait --------------------------------------------------------------------
deadline=$(( SECONDS + TIMEOUT ))
until engine_up; do
    if (( SECONDS >= deadline )); then
        log "dockerd did not answer within ${TIMEOUT}s; last lines of $LOGFILE:"
        tail -n 30 "$LOGFILE" >&2 || true
        die "engine at ${HOST_URI} is not up"
    fi
    launcher=$(cat "${PIDFILE}.launcher" 2>/dev/null || true)
    if [[ -n "$launcher" ]] && ! kill -0 "$launcher" 2>/dev/null && [[ ! -f "$PIDFILE" ]]; then
        log "dockerd exited during start; last lines of $LOGFILE:"
        tail -n 30 "$LOGFILE" >&2 || true
        die "dockerd failed to start"
    fi
    sleep 1
done
rm -f "${PIDFILE}.launcher"

log "engine up at ${HOST_URI} ($(DOCKER_HOST="$HOST_URI" docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
emit_env
