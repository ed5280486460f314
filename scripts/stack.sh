#!/usr/bin/env bash
# Runs the whole system as local background processes.
#
#   scripts/stack.sh datastores   PostgreSQL and Redis: use the ones answering, else start our own
#   scripts/stack.sh up [--fresh] datastores, databases, migrations, demo data, every service; waits
#                                 until all answer, then prints the URLs (--fresh drops the databases;
#                                 always so offline, where localstripe starts empty)
#   scripts/stack.sh down         stops every service this data folder started
#   scripts/stack.sh stop-datastores  stops the PostgreSQL and Redis we started (if we did)
#   scripts/stack.sh start|stop|kill NAME...   one service (kill = SIGKILL, a crash)
#   scripts/stack.sh status       what runs, with pids
#   scripts/stack.sh env          prints the effective settings (KEY=value), for other scripts
#
# Settings: the caller's environment, then .env, then .env.example (first one wins). The database
# and service URLs are derived from the ports unless set explicitly.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

load_env_file() {
  local file=$1 line key value
  [ -f "$file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | \#*) continue ;; esac
    key=${line%%=*}
    value=${line#*=}
    [ -n "${!key+x}" ] || export "$key=$value"
  done <"$file"
}
load_env_file .env
load_env_file .env.example

DATA_DIR=$(mkdir -p "$DATA_DIR" && cd "$DATA_DIR" && pwd)
LOG_DIR=$DATA_DIR/log
RUN_DIR=$DATA_DIR/run
# Our own PostgreSQL and Redis (only if none answer) live in one place for every stack of this
# checkout, so the development and the test stack share them.
DATASTORE_DIR=${DATASTORE_DIR:-$ROOT/var/datastores}
mkdir -p "$LOG_DIR" "$RUN_DIR"
PY=${PYTHON:-$ROOT/.venv/bin/python}
BIN=$(dirname "$PY")

pg=postgresql://$POSTGRES_USER@$POSTGRES_HOST:$POSTGRES_PORT
export ADMIN_DATABASE_URL=${ADMIN_DATABASE_URL:-$pg/${DB_PREFIX}_admin}
export BILLING_DATABASE_URL=${BILLING_DATABASE_URL:-postgresql+asyncpg://$POSTGRES_USER@$POSTGRES_HOST:$POSTGRES_PORT/${DB_PREFIX}_billing}
export PAY_API_DATABASE_URL=${PAY_API_DATABASE_URL:-postgresql+psycopg://$POSTGRES_USER@$POSTGRES_HOST:$POSTGRES_PORT/${DB_PREFIX}_pay_api}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/$REDIS_DB}
export ADMIN_URL=${ADMIN_URL:-http://127.0.0.1:$ADMIN_PORT}
export BILLING_URL=${BILLING_URL:-http://127.0.0.1:$BILLING_PORT}
export PAY_API_URL=${PAY_API_URL:-http://127.0.0.1:$PAY_API_PORT}
export PAY_API_PUBLIC_URL=${PAY_API_PUBLIC_URL:-http://127.0.0.1:$PAY_API_PORT}
if [ "${STRIPE_OFFLINE:-1}" = 1 ]; then
  export STRIPE_API_BASE=${STRIPE_API_BASE:-http://127.0.0.1:$LOCALSTRIPE_PORT}
  export STRIPE_JS_URL=${STRIPE_JS_URL:-http://127.0.0.1:$LOCALSTRIPE_PORT/js.stripe.com/v3/}
  export STRIPE_REGISTER_WEBHOOK=${STRIPE_REGISTER_WEBHOOK:-1}
else
  export STRIPE_API_BASE=${STRIPE_API_BASE:-} STRIPE_JS_URL=${STRIPE_JS_URL:-}
  export STRIPE_REGISTER_WEBHOOK=${STRIPE_REGISTER_WEBHOOK:-0}
fi
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}
# Local stacks (development, demo, tests) may move billing's clock forward; production never sets it.
export BILLING_TEST_CLOCK=${BILLING_TEST_CLOCK:-1}
export ETL_STATE_FILE=${ETL_STATE_FILE:-$DATA_DIR/etl/state.json}
export DATA_DIR PYTHONUNBUFFERED=1

say() { printf '%s\n' "$*" >&2; }

as_postgres() {
  # PostgreSQL refuses to run as root; run its tools as the postgres user then.
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

apt_install() {
  say "installing $* with apt-get"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; fi
}

postgres_sql() {
  # postgres_sql SQL: run one statement as $POSTGRES_USER on the postgres database; prints rows
  "$PY" - "$1" <<'EOF'
import os, sys
import psycopg
with psycopg.connect(host=os.environ["POSTGRES_HOST"], port=os.environ["POSTGRES_PORT"],
                     user=os.environ["POSTGRES_USER"], dbname="postgres", autocommit=True,
                     connect_timeout=2) as conn:
    cursor = conn.execute(sys.argv[1])
    if cursor.description:
        for row in cursor.fetchall():
            print(*row)
EOF
}

postgres_answers() {
  postgres_sql "SELECT 1" >/dev/null 2>&1
}

redis_answers() {
  "$PY" - "$REDIS_PORT" <<'EOF' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
EOF
}

ensure_postgres() {
  postgres_answers && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
  postgres_answers && return 0
  local bin data=$DATASTORE_DIR/postgres
  bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
  mkdir -p "$DATASTORE_DIR"
  if [ "$(id -u)" = 0 ] && ! as_postgres test -x "$DATASTORE_DIR"; then
    # the postgres user cannot reach this checkout (e.g. under /root): keep the cluster elsewhere
    data=/var/tmp/cinema-billing-postgres-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)
    say "PostgreSQL: $DATASTORE_DIR is not reachable by the postgres user; using $data"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres "$data"
    say "PostgreSQL: creating a cluster in $data"
    as_postgres "$bin/initdb" -D "$data" -U "$POSTGRES_USER" --auth=trust >/dev/null
  fi
  say "PostgreSQL: starting our own on $POSTGRES_HOST:$POSTGRES_PORT"
  as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-p $POSTGRES_PORT -c listen_addresses=$POSTGRES_HOST -k $data" start >/dev/null
  postgres_answers
}

ensure_redis() {
  redis_answers && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$DATASTORE_DIR/redis"
  say "Redis: starting our own on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$DATASTORE_DIR/redis" --logfile "$DATASTORE_DIR/redis/redis.log" \
    --pidfile "$DATASTORE_DIR/redis/redis.pid"
  for _ in $(seq 50); do redis_answers && return 0; sleep 0.1; done
  say "Redis did not start"; return 1
}

ensure_databases() {
  local fresh=$1 db
  for db in "${DB_PREFIX}_admin" "${DB_PREFIX}_billing" "${DB_PREFIX}_pay_api"; do
    if [ "$fresh" = 1 ]; then postgres_sql "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"; fi
    if [ -z "$(postgres_sql "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
      postgres_sql "CREATE DATABASE \"$db\""
    fi
  done
}

migrate() {
  "$PY" admin/manage.py migrate --no-input >"$LOG_DIR/migrate-admin.log" 2>&1
  "$BIN/alembic" -c billing/alembic.ini upgrade head >"$LOG_DIR/migrate-billing.log" 2>&1
  "$BIN/alembic" -c pay_api/alembic.ini upgrade head >"$LOG_DIR/migrate-pay_api.log" 2>&1
}

start() {
  # start NAME COMMAND...: a background process in its own session (so `down` stops its children)
  local name=$1
  shift
  if is_running "$name"; then return 0; fi
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

is_running() {
  local pidfile=$RUN_DIR/$1.pid
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

wait_http() {
  # wait_http NAME URL: until URL answers 2xx, or fail with the end of the service's log
  local name=$1 url=$2
  for _ in $(seq 300); do
    if "$PY" -c "import sys, httpx; sys.exit(0 if httpx.get('$url', timeout=1).is_success else 1)" 2>/dev/null; then
      return 0
    fi
    if ! is_running "$name"; then break; fi
    sleep 0.2
  done
  say "$name did not answer at $url; the end of $LOG_DIR/$name.log:"
  tail -n 30 "$LOG_DIR/$name.log" >&2 || true
  return 1
}

port_of() {
  case "$1" in
    localstripe) echo "$LOCALSTRIPE_PORT" ;; billing) echo "$BILLING_PORT" ;;
    pay_api) echo "$PAY_API_PORT" ;; admin) echo "$ADMIN_PORT" ;;
  esac
}

port_taken() {
  "$PY" -c "import socket, sys; s = socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1', $1)) == 0 else 1)"
}

start_service() {
  # the one place that says how each process of the system is started
  local port
  port=$(port_of "$1")
  if [ -n "$port" ] && ! is_running "$1" && port_taken "$port"; then
    say "port $port for $1 is taken by another process; set ${1^^}_PORT (see .env.example)"
    return 1
  fi
  case "$1" in
    localstripe) start localstripe "$PY" scripts/localstripe_server.py --port "$LOCALSTRIPE_PORT" \
      --data-dir "$DATA_DIR/localstripe" ;;
    billing) start billing "$BIN/uvicorn" billing.main:app --host 127.0.0.1 --port "$BILLING_PORT" \
      --no-access-log ;;
    billing-worker*) start "$1" "$PY" -m billing.worker ;;
    pay_api) start pay_api "$BIN/gunicorn" 'pay_api:create_app()' --bind "127.0.0.1:$PAY_API_PORT" \
      --workers 2 --threads 4 --timeout 60 ;;
    pay_api-worker*) start "$1" "$PY" -m pay_api.worker ;;
    admin) start admin "$BIN/gunicorn" config.wsgi --chdir admin --bind "127.0.0.1:$ADMIN_PORT" \
      --workers 2 ;;
    etl) start etl "$PY" -m etl ;;
    *) say "unknown service: $1"; return 2 ;;
  esac
}

health_url() {
  case "$1" in
    billing) echo "$BILLING_URL/health" ;;
    pay_api) echo "$PAY_API_URL/health" ;;
    admin) echo "$ADMIN_URL/health" ;;
    localstripe) echo "http://127.0.0.1:$LOCALSTRIPE_PORT/js.stripe.com/v3/" ;;
  esac
}

stop_service() {
  # stop_service NAME [SIGNAL]: the process group of one service (SIGKILL to simulate a crash)
  local name=$1 signal=${2:-TERM} pidfile=$RUN_DIR/$1.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$signal" -- "-$pid" 2>/dev/null || kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    say "stopped $name"
  fi
  rm -f "$pidfile"
}

cmd_start() {
  local name url
  for name in "$@"; do
    start_service "$name"
    url=$(health_url "$name")
    if [ -n "$url" ]; then wait_http "$name" "$url"; fi
  done
}

cmd_datastores() {
  ensure_postgres
  ensure_redis
}

cmd_up() {
  local fresh=0
  [ "${1:-}" = --fresh ] && fresh=1
  # Offline, localstripe starts empty every time; databases that remembered its customers and
  # intents would point at objects that no longer exist, so they start empty too.
  [ "$STRIPE_OFFLINE" = 1 ] && fresh=1
  cmd_datastores
  ensure_databases "$fresh"
  if [ "$fresh" = 1 ]; then rm -f "$ETL_STATE_FILE"; fi
  mkdir -p "$(dirname "$ETL_STATE_FILE")"
  migrate
  "$PY" admin/manage.py load_demo_data >"$LOG_DIR/demo-data.log" 2>&1
  "$PY" admin/manage.py ensure_superuser >>"$LOG_DIR/demo-data.log" 2>&1

  if [ "$STRIPE_OFFLINE" = 1 ]; then
    start_service localstripe
    wait_http localstripe "http://127.0.0.1:$LOCALSTRIPE_PORT/js.stripe.com/v3/"
  fi
  for name in billing billing-worker pay_api pay_api-worker admin etl; do start_service "$name"; done
  # More copies of the workers (WORKER_COPIES=2): they share the work through SKIP LOCKED.
  for copy in $(seq 2 "${WORKER_COPIES:-1}"); do
    start_service "billing-worker-$copy"
    start_service "pay_api-worker-$copy"
  done
  wait_http billing "$BILLING_URL/health"
  wait_http pay_api "$PAY_API_URL/health"
  wait_http admin "$ADMIN_URL/health"
  cat <<EOF
Cinema Billing is up (logs in $LOG_DIR):
  admin panel   $ADMIN_URL/admin/   (login $ADMIN_USERNAME / $ADMIN_PASSWORD)
  billing API   $BILLING_URL/docs
  pay_api       $PAY_API_URL   (payment pages at $PAY_API_PUBLIC_URL/pay/<payment id>)
EOF
  if [ "$STRIPE_OFFLINE" = 1 ]; then echo "  localstripe   $STRIPE_API_BASE"; fi
}

cmd_down() {
  local pidfile
  for pidfile in "$RUN_DIR"/*.pid; do
    [ -f "$pidfile" ] || continue
    stop_service "$(basename "$pidfile" .pid)"
  done
}

cmd_stop_datastores() {
  # only the PostgreSQL and Redis this checkout started itself
  local data=$DATASTORE_DIR/postgres bin
  [ -f "$data/postmaster.pid" ] || data=/var/tmp/cinema-billing-postgres-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)
  if [ -f "$data/postmaster.pid" ]; then
    bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")
    as_postgres "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null && say "stopped our PostgreSQL"
  fi
  if [ -f "$DATASTORE_DIR/redis/redis.pid" ]; then
    kill "$(cat "$DATASTORE_DIR/redis/redis.pid")" 2>/dev/null && say "stopped our Redis"
    rm -f "$DATASTORE_DIR/redis/redis.pid"
  fi
  return 0
}

cmd_status() {
  local pidfile name
  for pidfile in "$RUN_DIR"/*.pid; do
    [ -f "$pidfile" ] || continue
    name=$(basename "$pidfile" .pid)
    if is_running "$name"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; fi
  done
}

cmd_env() {
  env | grep -E '^(ADMIN|BILLING|PAY_API|LOCALSTRIPE|STRIPE|AUTH_JWT|SERVICE_JWT|REDIS|POSTGRES|DB_PREFIX|DATA_DIR|DJANGO|ETL|WORKER)_?' | sort
}

case "${1:-}" in
  datastores) cmd_datastores ;;
  stop-datastores) cmd_stop_datastores ;;
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; for name in "$@"; do stop_service "$name"; done ;;
  kill) shift; for name in "$@"; do stop_service "$name" KILL; done ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) say "usage: $0 datastores|stop-datastores|up [--fresh]|down|start|stop|kill NAME...|status|env"; exit 2 ;;
esac
