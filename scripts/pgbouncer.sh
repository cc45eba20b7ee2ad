#!/usr/bin/env bash
# A throwaway PgBouncer in transaction pooling mode in front of a test cluster (the one
# scripts/postgres.sh starts), for the tests that run intentkit behind a pooler. Installs
# Debian's pgbouncer if it is missing. Every database of the cluster is reachable through it
# under its own name; PgBouncer's defaults otherwise (it refuses the `options` startup
# parameter, as a platform's pooler usually does).
#   bash scripts/pgbouncer.sh start DIR POSTGRES_URL   prints postgres://postgres@127.0.0.1:PORT/postgres
#   bash scripts/pgbouncer.sh stop DIR
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?a directory}
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
  start)
    url=${3:?the PostgreSQL admin URL}
    if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
      if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
      echo "installing pgbouncer from Debian" >&2
      $sudo apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends pgbouncer >/dev/null
      # The package starts its own instance on 6432; ours runs on a port of its own.
      service pgbouncer stop >/dev/null 2>&1 || true
    fi
    bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
    hostport=${url#*@}; hostport=${hostport%%/*}
    pg_host=${hostport%:*}; pg_port=${hostport##*:}
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$dir"
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$pg_host port=$pg_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    echo '"postgres" ""' >"$dir/userlist.txt"
    [ "$(id -u)" = 0 ] && chown -R postgres "$dir"
    as_postgres "$bin" -d "$dir/pgbouncer.ini" >/dev/null
    for _ in $(seq 100); do
      python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
      sleep 0.1
    done
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    [ -f "$dir/pgbouncer.pid" ] && kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
    ;;
  *) echo "usage: $0 start DIR POSTGRES_URL | stop DIR" >&2; exit 2 ;;
esac
