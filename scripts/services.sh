#!/usr/bin/env bash
# Start the servers the test suite talks to, if they are down: PostgreSQL (5432), MariaDB (3306),
# Redis (6379) and a 3-master Redis Cluster on 127.0.0.1:7001-7003. Idempotent; loopback only.
# When COATCHECK_SERVICES_STARTED names a file, the name of each server this run started is
# appended to it, and `bash scripts/services.sh --stop FILE` stops those (and only those) again.
set -euo pipefail

started() {  # started NAME: remember that this run started NAME
  if [ -n "${COATCHECK_SERVICES_STARTED:-}" ]; then echo "$1" >> "$COATCHECK_SERVICES_STARTED"; fi
}

if [ "${1:-}" = "--stop" ]; then
  [ -f "${2:-}" ] || exit 0
  while read -r name; do
    echo "services: stopping $name (started by this run)"
    case $name in
      postgresql) pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main stop || true ;;
      mariadb) mariadb-admin -h 127.0.0.1 -u root shutdown || true ;;
      redis) redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true ;;
      redis-cluster) for port in 7001 7002 7003; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done ;;
    esac
  done < "$2"
  exit 0
fi

wait_for() {  # wait_for NAME COMMAND...: retry COMMAND for up to 30 s
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "services: $name did not come up" >&2
  return 1
}

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  started postgresql
fi
wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432

if ! mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  echo "services: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  started mariadb
fi
wait_for MariaDB mariadb-admin -h 127.0.0.1 -u root ping

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  started redis
fi
wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping

cluster_ports=(7001 7002 7003)
cluster_dir=${COATCHECK_CLUSTER_DIR:-/tmp/coatcheck-redis-cluster}
if [ "$(redis-cli -p 7001 cluster info 2>/dev/null | tr -d '\r' | grep -c '^cluster_state:ok$')" != 1 ]; then
  echo "services: starting a 3-master Redis Cluster on ports ${cluster_ports[*]}"
  started redis-cluster
  for port in "${cluster_ports[@]}"; do
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$cluster_dir"
  for port in "${cluster_ports[@]}"; do
    mkdir -p "$cluster_dir/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$cluster_dir/$port/nodes.conf" --cluster-node-timeout 2000 \
      --save "" --appendonly no --dir "$cluster_dir/$port" --daemonize yes \
      --logfile "$cluster_dir/$port/redis.log"
  done
  for port in "${cluster_ports[@]}"; do wait_for "Redis $port" redis-cli -p "$port" ping; done
  redis-cli --cluster create 127.0.0.1:7001 127.0.0.1:7002 127.0.0.1:7003 --cluster-replicas 0 --cluster-yes >/dev/null
  wait_for "Redis Cluster" bash -c "redis-cli -p 7001 cluster info | grep -q 'cluster_state:ok'"
fi

# Databases the tests use (each test then works in its own table).
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'coatcheck_test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE coatcheck_test"
mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS coatcheck_test"
echo "services: PostgreSQL, MariaDB, Redis and Redis Cluster are up"
