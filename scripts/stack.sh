#!/usr/bin/env bash
# Runs the whole system as local background processes.
#
#   scripts/stack.sh up [--fresh]  checks the ports, then datastores, databases, migrations, every
#                                 service; returns once all answer and billing holds the admin's
#                                 catalog, then prints the URLs. Keeps every piece of data (the
#                                 databases, localstripe's objects, the ETL's watermark); when the
#                                 stack already runs it says so and changes nothing; when it fails
#                                 it stops what it started. --fresh wipes the data first.
#   scripts/stack.sh down         stops every service of this data folder, and the PostgreSQL and
#                                 Redis that its `up` started (if it did)
#   scripts/stack.sh reset        down, wipe this stack's data (as `up --fresh`), up again
#   scripts/stack.sh datastores   PostgreSQL and Redis: use the ones answering, else start our own
#   scripts/stack.sh stop-datastores  stops the PostgreSQL and Redis we started (if we did)
#   scripts/stack.sh start|stop|kill NAME...   one service (kill = SIGKILL, a crash)
#   scripts/stack.sh status       what runs, with pids
#   scripts/stack.sh logs [NAME]  follows the logs (all, or one service's)
#   scripts/stack.sh env          prints the effective settings (KEY=value), for other scripts
#
# Settings, the one source for the stack, the demo and every test suite: the caller's environment,
# then .env, then what this script chose for its own PostgreSQL (var/datastores/chosen.env), then
# .env.example (first one wins). The database and service URLs are derived from the ports unless set.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DEFAULTED=" "  # the keys that came from .env.example (the user did not choose them)
load_env_file() {
  local file=$1 line key value
  [ -f "$file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | \#*) continue ;; esac
    key=${line%%=*}
    value=${line#*=}
    if [ -z "${!key+x}" ]; then
      export "$key=$value"
      [ "$file" != .env.example ] || DEFAULTED+="$key "
    fi
  done <"$file"
}
load_env_file .env
# Our own PostgreSQL and Redis (only if none answer) live in one place for every stack of this
# checkout, so the development and the test stacks share them.
DATASTORE_DIR=${DATASTORE_DIR:-$ROOT/var/datastores}
CHOSEN_ENV=$DATASTORE_DIR/chosen.env
load_env_file "$CHOSEN_ENV"
load_env_file .env.example

DATA_DIR=$(mkdir -p "$DATA_DIR" && cd "$DATA_DIR" && pwd)
LOG_DIR=$DATA_DIR/log
RUN_DIR=$DATA_DIR/run
mkdir -p "$LOG_DIR" "$RUN_DIR"
PY=${PYTHON:-$ROOT/.venv/bin/python}
BIN=$(dirname "$PY")

DERIVED=" "
derive() {
  # derive NAME VALUE: NAME is VALUE unless the user set it (derived again when a port changes)
  if [ -z "${!1:-}" ] || [[ $DERIVED == *" $1 "* ]]; then
    export "$1=$2"
    DERIVED+="$1 "
  fi
}

derive_settings() {
  local pg=$POSTGRES_USER@$POSTGRES_HOST:$POSTGRES_PORT
  derive ADMIN_DATABASE_URL "postgresql://$pg/${DB_PREFIX}_admin"
  derive BILLING_DATABASE_URL "postgresql+asyncpg://$pg/${DB_PREFIX}_billing"
  derive PAY_API_DATABASE_URL "postgresql+psycopg://$pg/${DB_PREFIX}_pay_api"
  derive REDIS_URL "redis://127.0.0.1:$REDIS_PORT/$REDIS_DB"
  derive ADMIN_URL "http://127.0.0.1:$ADMIN_PORT"
  derive BILLING_URL "http://127.0.0.1:$BILLING_PORT"
  derive PAY_API_URL "http://127.0.0.1:$PAY_API_PORT"
  derive PAY_API_PUBLIC_URL "http://127.0.0.1:$PAY_API_PORT"
  # billing's emails go to the local mail server (scripts/mail_server.py), which keeps them all
  derive MAIL_URL "http://127.0.0.1:$MAIL_PORT"
  derive BILLING_SMTP_PORT "$MAIL_SMTP_PORT"
  if [ "${STRIPE_OFFLINE:-1}" = 1 ]; then
    derive STRIPE_API_BASE "http://127.0.0.1:$LOCALSTRIPE_PORT"
    derive STRIPE_JS_URL "http://127.0.0.1:$LOCALSTRIPE_PORT/js.stripe.com/v3/"
    derive STRIPE_REGISTER_WEBHOOK 1
  else
    export STRIPE_API_BASE=${STRIPE_API_BASE:-} STRIPE_JS_URL=${STRIPE_JS_URL:-}
    derive STRIPE_REGISTER_WEBHOOK 0
  fi
}
derive_settings
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}
# Local stacks (development, demo, tests) may move billing's clock forward; production never sets it.
export BILLING_TEST_CLOCK=${BILLING_TEST_CLOCK:-1}
export ETL_STATE_FILE=${ETL_STATE_FILE:-$DATA_DIR/etl/state.json}
export DATA_DIR PYTHONUNBUFFERED=1

SERVICES=(mail billing billing-worker pay_api pay_api-worker admin etl)
STARTED_DATASTORES=()  # what this run started: `up` records it, so that `down` stops it again

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
import os, sys, time
import psycopg
for attempt in range(20):  # a busy shared server ("too many clients") frees a slot soon
    try:
        conn = psycopg.connect(host=os.environ["POSTGRES_HOST"], port=os.environ["POSTGRES_PORT"],
                               user=os.environ["POSTGRES_USER"], dbname="postgres",
                               autocommit=True, connect_timeout=2)
        break
    except psycopg.OperationalError as error:
        if "too many clients" not in str(error) or attempt == 19:
            raise
        time.sleep(0.5)
with conn:
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

port_taken() {
  "$PY" -c "import socket, sys; s = socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1', $1)) == 0 else 1)"
}

postgres_data_dir() {
  # the cluster we start ourselves: in the datastore folder, or elsewhere when the postgres user
  # cannot reach it (e.g. a checkout under /root)
  mkdir -p "$DATASTORE_DIR"
  if [ "$(id -u)" = 0 ] && ! as_postgres test -x "$DATASTORE_DIR"; then
    echo "/var/tmp/cinema-billing-postgres-$(printf '%s' "$DATASTORE_DIR" | md5sum | cut -c1-8)"
  else
    echo "$DATASTORE_DIR/postgres"
  fi
}

choose_own_postgres_port() {
  # A server on the default port refuses us (Debian's own cluster asks a password over TCP): ours
  # goes on the next free port, remembered in chosen.env so every later command uses it.
  local port=$POSTGRES_PORT
  while port_taken "$port"; do port=$((port + 1)); done
  say "PostgreSQL on $POSTGRES_HOST:$POSTGRES_PORT refuses $POSTGRES_USER without a password;" \
    "starting our own on port $port (remembered in $CHOSEN_ENV)"
  mkdir -p "$DATASTORE_DIR"
  printf '# chosen by scripts/stack.sh: the server on the default port refused us\nPOSTGRES_PORT=%s\n' \
    "$port" >"$CHOSEN_ENV"
  export POSTGRES_PORT=$port
  derive_settings
}

ensure_postgres() {
  postgres_answers && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
  postgres_answers && return 0
  if port_taken "$POSTGRES_PORT"; then
    if [[ $DEFAULTED != *" POSTGRES_PORT "* ]]; then
      say "PostgreSQL on $POSTGRES_HOST:$POSTGRES_PORT (your POSTGRES_PORT) does not let" \
        "$POSTGRES_USER in without a password; allow it (trust) or set POSTGRES_PORT to a free" \
        "port, where make up starts its own"
      return 1
    fi
    choose_own_postgres_port
  fi
  local bin data
  data=$(postgres_data_dir)
  bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
  mkdir -p "$DATASTORE_DIR"
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres "$data"
    say "PostgreSQL: creating a cluster in $data"
    # UTF-8 whatever the locale of this shell (none set gives SQL_ASCII, and text as bytes)
    as_postgres "$bin/initdb" -D "$data" -U "$POSTGRES_USER" --auth=trust --encoding=UTF8 \
      --locale=C.UTF-8 >/dev/null
  fi
  say "PostgreSQL: starting our own on $POSTGRES_HOST:$POSTGRES_PORT"
  as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-p $POSTGRES_PORT -c listen_addresses=$POSTGRES_HOST -k $data" start >/dev/null
  STARTED_DATASTORES+=(postgres)
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
  STARTED_DATASTORES+=(redis)
  for _ in $(seq 50); do redis_answers && return 0; sleep 0.1; done
  say "Redis did not start"; return 1
}

stop_postgres() {
  local data bin
  data=$(postgres_data_dir)
  [ -f "$data/postmaster.pid" ] || return 0
  bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")
  as_postgres "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null && say "stopped our PostgreSQL"
}

stop_redis() {
  local pidfile=$DATASTORE_DIR/redis/redis.pid
  [ -f "$pidfile" ] || return 0
  kill "$(cat "$pidfile")" 2>/dev/null && say "stopped our Redis"
  rm -f "$pidfile"
}

DATABASES=("${DB_PREFIX}_admin" "${DB_PREFIX}_billing" "${DB_PREFIX}_pay_api")

create_databases() {
  # creates the missing ones (UTF-8 whatever the server's default); says whether admin's was new
  local db exists
  ADMIN_DATABASE_CREATED=0
  for db in "${DATABASES[@]}"; do
    exists=$(postgres_sql "SELECT 1 FROM pg_database WHERE datname = '$db'")  # fails: stop here
    if [ -z "$exists" ]; then
      postgres_sql "CREATE DATABASE \"$db\" TEMPLATE template0 ENCODING 'UTF8'"
      [ "$db" != "${DB_PREFIX}_admin" ] || ADMIN_DATABASE_CREATED=1
    fi
  done
}

wipe_data() {
  # every piece of this stack's data: databases, localstripe's objects, the ETL's watermark and
  # billing's Redis keys (its access cache)
  local db
  for db in "${DATABASES[@]}"; do postgres_sql "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"; done
  rm -rf "$DATA_DIR/localstripe" "$ETL_STATE_FILE"
  "$PY" - "${BILLING_REDIS_PREFIX:-billing:}" <<'EOF'
import os, sys
import redis
client = redis.Redis.from_url(os.environ["REDIS_URL"])
for key in client.scan_iter(match=sys.argv[1] + "*", count=1000):
    client.delete(key)
EOF
  say "wiped the data of $DB_PREFIX (databases, localstripe, ETL state, Redis keys)"
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

running_services() {
  local pidfile
  for pidfile in "$RUN_DIR"/*.pid; do
    [ -f "$pidfile" ] || continue
    if is_running "$(basename "$pidfile" .pid)"; then basename "$pidfile" .pid; fi
  done
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
    pay_api) echo "$PAY_API_PORT" ;; admin) echo "$ADMIN_PORT" ;; mail) echo "$MAIL_PORT" ;;
  esac
}

check_port() {
  local port
  port=$(port_of "$1")
  if [ -n "$port" ] && ! is_running "$1" && port_taken "$port"; then
    say "port $port for $1 is taken by another process; set ${1^^}_PORT (see .env.example)"
    return 1
  fi
}

start_service() {
  # the one place that says how each process of the system is started
  check_port "$1"
  case "$1" in
    localstripe) start localstripe "$PY" scripts/localstripe_server.py --port "$LOCALSTRIPE_PORT" \
      --data-dir "$DATA_DIR/localstripe" ;;
    billing)
      # Several web processes: prometheus-client's multiprocess files, fresh at each start.
      is_running billing || { rm -rf "$RUN_DIR/metrics-billing"; mkdir -p "$RUN_DIR/metrics-billing"; }
      start billing env PROMETHEUS_MULTIPROC_DIR="$RUN_DIR/metrics-billing" \
        "$BIN/uvicorn" billing.main:app --host 127.0.0.1 --port "$BILLING_PORT" \
        --workers "${BILLING_WEB_WORKERS:-2}" --no-access-log ;;
    billing-worker*) start "$1" "$PY" -m billing.worker ;;
    pay_api) start pay_api "$BIN/gunicorn" 'pay_api:create_app()' --bind "127.0.0.1:$PAY_API_PORT" \
      --workers 2 --threads 4 --timeout 60 ;;
    pay_api-worker*) start "$1" "$PY" -m pay_api.worker ;;
    admin) start admin "$BIN/gunicorn" config.wsgi --chdir admin --bind "127.0.0.1:$ADMIN_PORT" \
      --workers 2 ;;
    etl) start etl "$PY" -m etl ;;
    mail) start mail "$PY" scripts/mail_server.py --smtp-port "$MAIL_SMTP_PORT" \
      --http-port "$MAIL_PORT" --data-dir "$DATA_DIR/mail" ;;
    *) say "unknown service: $1"; return 2 ;;
  esac
}

health_url() {
  # readiness: database (and Redis for billing) answer, migrations at head
  case "$1" in
    billing) echo "$BILLING_URL/health/ready" ;;
    pay_api) echo "$PAY_API_URL/health/ready" ;;
    admin) echo "$ADMIN_URL/health/ready" ;;
    mail) echo "$MAIL_URL/health" ;;
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

print_urls() {
  cat <<EOF
  admin panel   $ADMIN_URL/admin/   (login $ADMIN_USERNAME / $ADMIN_PASSWORD)
  billing API   $BILLING_URL/docs
  pay_api       $PAY_API_URL/health   (payment pages at $PAY_API_PUBLIC_URL/pay/<payment id>)
  emails        $MAIL_URL/messages   (make mail: every message billing sent, kept here)
EOF
  if [ "$STRIPE_OFFLINE" = 1 ]; then
    echo "  localstripe   http://127.0.0.1:$LOCALSTRIPE_PORT/v1/customers   (Stripe's API: curl -u $STRIPE_SECRET_KEY: <url>)"
  fi
  echo "Logs: make logs (files in $LOG_DIR). Stop: make down. Wipe the data: make reset."
}

undo_failed_up() {
  # a failed `up` leaves nothing half-started
  local status=$?
  trap - EXIT
  [ "$status" = 0 ] && return 0
  say "make up failed: stopping what it started"
  cmd_down
  exit "$status"
}

cmd_up() {
  local fresh=0 name running
  [ "${1:-}" = --fresh ] && fresh=1
  running=$(running_services | tr '\n' ' ')
  if [ -n "$running" ]; then
    echo "Cinema Billing is already running (${running% }); nothing changed."
    echo "make status shows each service, make down stops them, make reset wipes the data."
    print_urls
    return 0
  fi
  # every port is checked before anything is changed
  if [ "$STRIPE_OFFLINE" = 1 ]; then check_port localstripe; fi
  for name in mail billing pay_api admin; do check_port "$name"; done

  trap undo_failed_up EXIT
  cmd_datastores
  printf '%s\n' "${STARTED_DATASTORES[@]}" >"$RUN_DIR/datastores"
  if [ "$fresh" = 1 ]; then wipe_data; fi
  create_databases
  mkdir -p "$(dirname "$ETL_STATE_FILE")"
  migrate
  if [ "$ADMIN_DATABASE_CREATED" = 1 ]; then
    "$PY" admin/manage.py load_demo_data >"$LOG_DIR/demo-data.log" 2>&1
  fi
  "$PY" admin/manage.py ensure_superuser >>"$LOG_DIR/demo-data.log" 2>&1

  if [ "$STRIPE_OFFLINE" = 1 ]; then cmd_start localstripe; fi
  for name in "${SERVICES[@]}"; do
    [ "$name" = etl ] || start_service "$name"
  done
  # More copies of the workers (WORKER_COPIES=2): they share the work through SKIP LOCKED.
  for copy in $(seq 2 "${WORKER_COPIES:-1}"); do
    start_service "billing-worker-$copy"
    start_service "pay_api-worker-$copy"
  done
  for name in billing pay_api admin mail; do wait_http "$name" "$(health_url "$name")"; done
  # "up" means billing holds the admin's catalog: one ETL pass now, then the ETL on its schedule
  if ! "$PY" -m etl --once >>"$LOG_DIR/etl.log" 2>&1; then
    say "the first copy of the catalog to billing failed; the end of $LOG_DIR/etl.log:"
    tail -n 20 "$LOG_DIR/etl.log" >&2
    return 1
  fi
  start_service etl
  trap - EXIT
  echo "Cinema Billing is up:"
  print_urls
}

cmd_down() {
  local pidfile datastore
  for pidfile in "$RUN_DIR"/*.pid; do
    [ -f "$pidfile" ] || continue
    stop_service "$(basename "$pidfile" .pid)"
  done
  if [ -f "$RUN_DIR/datastores" ]; then
    while read -r datastore; do
      case "$datastore" in postgres) stop_postgres ;; redis) stop_redis ;; esac
    done <"$RUN_DIR/datastores"
    rm -f "$RUN_DIR/datastores"
  fi
  if [ -f "$(postgres_data_dir)/postmaster.pid" ] || [ -f "$DATASTORE_DIR/redis/redis.pid" ]; then
    say "our PostgreSQL/Redis in $DATASTORE_DIR keep running (started by make test or another" \
      "stack of this checkout): scripts/stack.sh stop-datastores stops them"
  fi
}

cmd_reset() {
  cmd_down
  cmd_datastores
  wipe_data
  cmd_up
}

cmd_stop_datastores() {
  # only the PostgreSQL and Redis this checkout started itself
  stop_postgres
  stop_redis
}

cmd_status() {
  local pidfile name any=0
  for pidfile in "$RUN_DIR"/*.pid; do
    [ -f "$pidfile" ] || continue
    any=1
    name=$(basename "$pidfile" .pid)
    if is_running "$name"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; fi
  done
  if [ "$any" = 0 ]; then echo "Cinema Billing is not running (data folder $DATA_DIR); make up starts it"; fi
}

cmd_logs() {
  # every service's log, or one; JSON lines (localstripe: plain text), followed until Ctrl-C
  local files=("$LOG_DIR"/*.log)
  if [ -n "${1:-}" ]; then files=("$LOG_DIR/$1.log"); fi
  if [ ! -f "${files[0]}" ]; then
    say "no log ${1:+for $1 }in $LOG_DIR (services: localstripe ${SERVICES[*]})"
    return 1
  fi
  exec tail -n 20 -F "${files[@]}"
}

cmd_env() {
  env | grep -E '^(ADMIN|BILLING|PAY_API|LOCALSTRIPE|STRIPE|AUTH_JWT|SERVICE_JWT|REDIS|POSTGRES|DB_PREFIX|DATA_DIR|DJANGO|ETL|WORKER|MAIL)_?' | sort
}

case "${1:-}" in
  datastores) cmd_datastores ;;
  stop-datastores) cmd_stop_datastores ;;
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  reset) cmd_reset ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; for name in "$@"; do stop_service "$name"; done ;;
  kill) shift; for name in "$@"; do stop_service "$name" KILL; done ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  env) cmd_env ;;
  *) say "usage: $0 up [--fresh]|down|reset|datastores|stop-datastores|start|stop|kill NAME...|status|logs [NAME]|env"; exit 2 ;;
esac
