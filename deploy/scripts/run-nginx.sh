#!/usr/bin/env bash
# nginx with TLS in front of the console (deploy/nginx/console.conf.template); runs in the foreground.
# Usage: run-nginx.sh            (settings from the environment, defaults below; docs/serving.md)
#   NGINX_PREFIX     where its config, logs, pid and temp files go        (var/nginx)
#   NGINX_TLS_PORT   HTTPS port                                            (8443; 443 on an appliance)
#   NGINX_HTTP_PORT  HTTP port, which redirects to HTTPS                   (8080; 80 on an appliance)
#   CONSOLE_UPSTREAM the console's address, as manage.py serve binds it   (127.0.0.1:8000)
#   NGINX_TLS_CERT / NGINX_TLS_KEY  a certificate and its key; without them a self-signed one is made once
#                    under NGINX_PREFIX/tls for NGINX_TLS_NAMES (DNS names, comma-separated; localhost)
#   NGINX_BODY_LIMIT / NGINX_V1_BODY_LIMIT / NGINX_UPLOAD_LIMIT  request body limits (1m / 21m / 64g)
# The console must trust this nginx's address: APPLIANCE_TRUSTED_PROXIES=127.0.0.1 when both run here.
set -euo pipefail
cd "$(dirname "$0")/../.."
PREFIX=$(realpath -m "${NGINX_PREFIX:-var/nginx}")
TLS_PORT=${NGINX_TLS_PORT:-8443}
HTTP_PORT=${NGINX_HTTP_PORT:-8080}
UPSTREAM=${CONSOLE_UPSTREAM:-127.0.0.1:${CONSOLE_PORT:-8000}}
CERT=${NGINX_TLS_CERT:-}
KEY=${NGINX_TLS_KEY:-}

command -v nginx >/dev/null || { echo "nginx is missing: apt-get install nginx (deploy/scripts/ensure-services.sh does)" >&2; exit 1; }
# nginx makes its temporary folders itself, owned by its worker user when started as root.
mkdir -p "$PREFIX/tls" "$PREFIX/tmp"

if [[ -z "$CERT" || -z "$KEY" ]]; then
  CERT=$PREFIX/tls/console.crt KEY=$PREFIX/tls/console.key
  if [[ ! -s "$CERT" || ! -s "$KEY" ]]; then
    names=${NGINX_TLS_NAMES:-localhost}
    san="IP:127.0.0.1,IP:::1"
    IFS=, read -ra dns <<<"$names"
    for name in "${dns[@]}"; do san="DNS:${name},${san}"; done
    echo "Generating a self-signed certificate for ${names} (${CERT})"
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=${dns[0]}" \
      -addext "subjectAltName=${san}" -keyout "$KEY" -out "$CERT" 2>/dev/null
    chmod 600 "$KEY"
  fi
fi

sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@TLS_PORT@|$TLS_PORT|g" -e "s|@HTTP_PORT@|$HTTP_PORT|g" \
  -e "s|@UPSTREAM@|$UPSTREAM|g" -e "s|@TLS_CERT@|$CERT|g" -e "s|@TLS_KEY@|$KEY|g" \
  -e "s|@BODY_LIMIT@|${NGINX_BODY_LIMIT:-1m}|g" -e "s|@V1_BODY_LIMIT@|${NGINX_V1_BODY_LIMIT:-21m}|g" \
  -e "s|@UPLOAD_LIMIT@|${NGINX_UPLOAD_LIMIT:-64g}|g" \
  deploy/nginx/console.conf.template >"$PREFIX/nginx.conf"
nginx -t -q -p "$PREFIX" -c "$PREFIX/nginx.conf"
echo "nginx: https://localhost:${TLS_PORT}/ → http://${UPSTREAM}/"
exec nginx -p "$PREFIX" -c "$PREFIX/nginx.conf" -g "daemon off;"
