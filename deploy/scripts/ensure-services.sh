#!/usr/bin/env bash
# Make sure the system packages and servers the console (and its tests) need are present and running.
# Usage: ensure-services.sh [--test]   (--test adds MariaDB and Chromium, which the test suite needs)
# As root, missing Debian packages are installed; otherwise it says exactly what to install.
set -euo pipefail

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

# nginx: the TLS front (deploy/scripts/run-nginx.sh), openssl: its generated certificate.
# libldap2-dev, libsasl2-dev: python-ldap (LDAP sign-in, docs/sign-in.md) is built from source by pip.
packages=(pkg-config libmariadb-dev gettext redis-server nginx openssl libldap2-dev libsasl2-dev)
if (( want_test )); then
  # systemd (systemd-analyze), logrotate and prometheus (promtool, the server) check deploy/ in tests.
  # slapd, ldap-utils: the OpenLDAP directory the sign-in tests start (tests/directory/slapd.py).
  # fonts-wqy-microhei: a CJK font, so Chromium draws the Chinese pages (and their screenshots) as text.
  packages+=(mariadb-server mariadb-client chromium fonts-wqy-microhei systemd logrotate prometheus slapd ldap-utils)
fi

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "Installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # slapd: no directory of its own and no service started; the tests run their own slapd.
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "Missing Debian packages. Install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

wait_for() {  # wait_for NAME COMMAND... : up to 30 s
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "$name did not come up within 30 s" >&2
  return 1
}

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "Starting Redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/appliance-redis.log
  wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
fi

if (( want_test )); then
  if ! mysqladmin -h 127.0.0.1 -uroot status >/dev/null 2>&1; then
    echo "Starting MariaDB on 127.0.0.1:3306"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    if [[ ! -d /var/lib/mysql/mysql ]]; then
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql \
      --bind-address=127.0.0.1 --port=3306
    wait_for MariaDB mysqladmin -h 127.0.0.1 -uroot status
  fi
  # The suite logs in as root with an empty password over TCP, as CI's MariaDB is set up.
  if ! mysql -h 127.0.0.1 -uroot -e "SELECT 1" >/dev/null 2>&1; then
    mysql -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('');" \
      || { echo "MariaDB refuses root over TCP; grant it or set DATABASE_URL" >&2; exit 1; }
  fi
fi
echo "services ready"
