#!/usr/bin/env bash
# Runs the whole system as local processes, under supervisor (one supervisord per data folder,
# scripts/supervisord.conf), in the topology docker-compose.yml deploys: several copies of billing's
# API and pay_api behind nginx when BILLING_COPIES / PAY_API_COPIES > 1.
#
#   scripts/stack.sh up [--fresh]  checks the ports, then datastores, databases, migrations, every
#                                 service; returns once all are ready and billing holds the admin's
#                                 catalog, then prints the URLs. Keeps every piece of data (the
#                                 databases, localstripe's objects, the ETL's watermark); when the
#                                 stack already runs it says so and changes nothing; when it fails
#                                 it stops what it started. --fresh wipes the data first.
#   scripts/stack.sh down         stops every service of this data folder (and its supervisord),
#                                 and the PostgreSQL and Redis that its `up` started (if it did)
#   scripts/stack.sh reset        down, wipe this stack's data (as `up --fresh`), up again
#   scripts/stack.sh datastores   PostgreSQL and Redis: use the ones answering, else start our own
#   scripts/stack.sh stop-datastores  stops the PostgreSQL and Redis we started (if we did)
#   scripts/stack.sh start|stop|kill NAME...   a service (billing: every copy) or one copy
#                                 (billing-2); start waits for readiness; kill = SIGKILL, a crash
#   scripts/stack.sh status       what runs, with pids
#   scripts/stack.sh logs [NAME]  follows the logs (all, or one service's)
#   scripts/stack.sh env          prints the effective settings (KEY=value), for other scripts
#   scripts/stack.sh run NAME     supervisord's command for NAME (not for people)
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

# --- processes: supervisord runs them (scripts/supervisord.conf); this script says what to run ---
#
# Copies (BILLING_COPIES, PAY_API_COPIES, WORKER_COPIES) are supervisor groups: `billing` names
# every copy, `billing-2` one. With more than one web copy, nginx
# (deploy/nginx/cinema.conf.template, as in docker-compose.yml) listens on ADMIN_PORT, BILLING_PORT
# and PAY_API_PORT, in front of the admin on ADMIN_PORT+10 and copy n on BILLING_PORT+10n /
# PAY_API_PORT+10n.

export ROOT LOG_DIR RUN_DIR BILLING_COPIES=${BILLING_COPIES:-1} PAY_API_COPIES=${PAY_API_COPIES:-1} \
  WORKER_COPIES=${WORKER_COPIES:-1}
export SUPERVISOR_SOCKET=$RUN_DIR/supervisor.sock
# a unix socket's path is at most 107 bytes
[ ${#SUPERVISOR_SOCKET} -lt 100 ] ||
  SUPERVISOR_SOCKET=/tmp/cinema-supervisor-$(printf '%s' "$RUN_DIR" | md5sum | cut -c1-12).sock

behind_nginx() { [ "$BILLING_COPIES" -gt 1 ] || [ "$PAY_API_COPIES" -gt 1 ]; }

copies_of() {
  # copies_of NAME...: the processes each NAME stands for (billing: every copy of billing's API)
  local name
  for name in "$@"; do
    case "$name" in
      billing) seq -f 'billing-%g' "$BILLING_COPIES" ;;
      pay_api) seq -f 'pay_api-%g' "$PAY_API_COPIES" ;;
      billing-worker | pay_api-worker) seq -f "$name-%g" "$WORKER_COPIES" ;;
      *) echo "$name" ;;
    esac
  done
}

target() {
  # supervisor's name of NAME: a group for every copy, group:copy for one
  case "$1" in
    billing | pay_api | billing-worker | pay_api-worker) echo "$1:*" ;;
    billing-worker-[0-9]* | pay_api-worker-[0-9]* | billing-[0-9]* | pay_api-[0-9]*) echo "${1%-*}:$1" ;;
    *) echo "$1" ;;
  esac
}

port_of() {
  # where NAME listens itself (behind nginx: its own port, copy n at +10n)
  local offset=0
  if behind_nginx; then
    case "$1" in billing-[0-9]* | pay_api-[0-9]*) offset=$((10 * ${1##*-})) ;; admin) offset=10 ;; esac
  fi
  case "$1" in
    localstripe) echo "$LOCALSTRIPE_PORT" ;;
    mail) echo "$MAIL_PORT" ;;
    billing-[0-9]*) echo $((BILLING_PORT + offset)) ;;
    pay_api-[0-9]*) echo $((PAY_API_PORT + offset)) ;;
    admin) echo $((ADMIN_PORT + offset)) ;;
  esac
}

service_command() {
  # the one place that says how each process of the system is started (sets CMD)
  local port
  port=$(port_of "$1")
  case "$1" in
    localstripe) CMD=("$PY" scripts/localstripe_server.py --port "$port" --data-dir "$DATA_DIR/localstripe") ;;
    billing-worker-*) CMD=("$PY" -m billing.worker) ;;
    billing-*) CMD=("$BIN/uvicorn" billing.main:app --host 127.0.0.1 --port "$port"
      --workers "${BILLING_WEB_WORKERS:-2}" --no-access-log) ;;
    pay_api-worker-*) CMD=("$PY" -m pay_api.worker) ;;
    pay_api-*) CMD=("$BIN/gunicorn" -c pay_api/gunicorn.conf.py 'pay_api:create_app()' --bind "127.0.0.1:$port") ;;
    admin) CMD=("$BIN/gunicorn" config.wsgi --chdir admin --bind "127.0.0.1:$port" --workers "${ADMIN_WEB_WORKERS:-2}") ;;
    etl) CMD=("$PY" -m etl) ;;
    mail) CMD=("$PY" scripts/mail_server.py --smtp-port "$MAIL_SMTP_PORT" --http-port "$MAIL_PORT"
      --data-dir "$DATA_DIR/mail") ;;
    nginx) CMD=("$(command -v nginx || echo /usr/sbin/nginx)" -c "$RUN_DIR/nginx.conf" -e "$LOG_DIR/nginx-error.log" -g "daemon off;") ;;
    *) say "unknown service: $1"; return 2 ;;
  esac
}

cmd_run() {
  # run NAME (supervisord's command for NAME): the environment `launch` saved, then the command
  local setting
  while IFS= read -r -d '' setting; do export "$setting" 2>/dev/null || true; done <"$RUN_DIR/env/$1.env"
  case "$1" in
    billing-[0-9]* | pay_api-[0-9]*)
      # prometheus-client's multiprocess mode: one empty folder shared by the copy's processes
      export PROMETHEUS_MULTIPROC_DIR=$RUN_DIR/prometheus/$1
      rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR" ;;
  esac
  case "$1" in
    billing-[0-9]*)
      # settings read before uvicorn forks: with several workers its supervisor would outlive
      # workers that die on a bad setting, and `up` would wait READY_TIMEOUT instead of failing
      "$PY" -c 'from billing.config import get_settings; get_settings()' || exit 1 ;;
  esac
  service_command "$1"
  exec "${CMD[@]}"
}

ctl() { "$BIN/supervisorctl" -c scripts/supervisord.conf "$@"; }

supervisor_runs() {
  [ -S "$SUPERVISOR_SOCKET" ] && [ -f "$RUN_DIR/supervisord.pid" ] &&
    kill -0 "$(cat "$RUN_DIR/supervisord.pid")" 2>/dev/null
}

ensure_supervisor() {
  supervisor_runs && return 0
  "$BIN/supervisord" -c scripts/supervisord.conf
  for _ in $(seq 50); do supervisor_runs && return 0; sleep 0.1; done
  say "supervisord did not start; see $LOG_DIR/supervisord.log"; return 1
}

supervisor_status() {
  # supervisorctl status [TARGET] as "name state pid" lines (name without its group)
  supervisor_runs || return 0
  { ctl status "$@" 2>/dev/null || true; } |
    awk '{ sub(/^.*:/, "", $1); pid = ($2 == "RUNNING") ? $4 : "-"; sub(",", "", pid); print $1, $2, pid }'
}

running_services() { supervisor_status | awk '$2 == "RUNNING" {print $1}'; }

pid_of() { supervisor_status "$(target "$1")" | awk '$2 == "RUNNING" {print $3}'; }

is_running() { [ -n "$(pid_of "$1")" ]; }

wait_http() {
  # wait_http NAME URL: until URL answers 2xx (at most READY_TIMEOUT s, 120 by default), or fail
  # with the end of the service's log as soon as its process died
  local name=$1 url=$2 pid
  pid=$(pid_of "$name")
  if "$PY" - "$url" "${pid:-0}" "${READY_TIMEOUT:-120}" <<'EOF'; then return 0; fi
import os, sys, time
import httpx
url, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        if httpx.get(url, timeout=1).is_success:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    try:
        if pid > 0:
            os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)  # the process died
    time.sleep(0.2)
sys.exit(1)
EOF
  say "$name did not answer at $url; the end of $LOG_DIR/$name.log:"
  tail -n 30 "$LOG_DIR/$name.log" >&2 || true
  return 1
}

check_port() {
  # check_port NAME [PORT]: refuse to start when another program holds the port
  local port=${2:-$(port_of "$1")}
  if [ -n "$port" ] && ! is_running "$1" && port_taken "$port"; then
    say "port $port for $1 is taken by another process; set ${1^^}_PORT (see .env.example)"
    return 1
  fi
}

ready_url() {
  # readiness: database (and Redis for billing) answer, migrations at head
  case "$1" in
    billing-[0-9]* | pay_api-[0-9]* | admin) echo "http://127.0.0.1:$(port_of "$1")/health/ready" ;;
    mail) echo "$MAIL_URL/health" ;;
    localstripe) echo "http://127.0.0.1:$LOCALSTRIPE_PORT/js.stripe.com/v3/" ;;
    nginx) echo "$BILLING_URL/health/ready" ;;
  esac
}

write_nginx_conf() {
  # deploy/nginx/cinema.conf.template with the local copies, as docker-compose's nginx has it
  local service port_var servers name
  for service in admin billing pay_api; do
    port_var=${service^^}_PORT
    servers=""
    for name in $(copies_of "$service"); do
      servers+="server 127.0.0.1:$(port_of "$name") max_fails=0; "
    done
    export "NGINX_${service^^}_LISTEN=127.0.0.1:${!port_var}" "NGINX_${service^^}_SERVERS=$servers"
  done
  "$PY" scripts/nginx_conf.py "$RUN_DIR/nginx.conf" --data-dir "$DATA_DIR"
}

launch() {
  # launch NAME...: start what is not running, with this script's environment (saved for `run`)
  local running name targets=()
  running=" $(running_services | tr '\n' ' ') "
  for name in $(copies_of "$@"); do
    [[ $running == *" $name "* ]] && continue
    check_port "$name"
    mkdir -p "$RUN_DIR/env"
    env -0 >"$RUN_DIR/env/$name.env"
    targets+=("$(target "$name")")
  done
  if [ ${#targets[@]} -gt 0 ]; then ctl start "${targets[@]}" >/dev/null; fi
}

await_ready() {
  local name url
  for name in $(copies_of "$@"); do
    url=$(ready_url "$name")
    if [ -n "$url" ]; then wait_http "$name" "$url"; fi
  done
}

cmd_start() {
  ensure_supervisor
  launch "$@"
  await_ready "$@"
}

cmd_stop() {
  # cmd_stop [KILL] NAME...: stop (TERM, KILL after 5 s) or crash (SIGKILL) every copy of each
  local signal=TERM name pid
  if [ "${1:-}" = KILL ]; then signal=KILL && shift; fi
  for name in $(copies_of "$@"); do
    pid=$(pid_of "$name")
    [ -n "$pid" ] || continue
    if [ "$signal" = KILL ]; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    else
      ctl stop "$(target "$name")" >/dev/null
    fi
    say "stopped $name"
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
  local fresh=0 name running port_var
  [ "${1:-}" = --fresh ] && fresh=1
  running=$(running_services | tr '\n' ' ')
  if [ -n "$running" ]; then
    echo "Cinema Billing is already running (${running% }); nothing changed."
    echo "make status shows each service, make down stops them, make reset wipes the data."
    print_urls
    return 0
  fi
  # every port is checked before anything is changed
  if behind_nginx && ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then apt_install nginx; fi
  if [ "$STRIPE_OFFLINE" = 1 ]; then check_port localstripe; fi
  for name in $(copies_of mail billing pay_api admin); do check_port "$name"; done
  if behind_nginx; then
    # nginx takes the public ports
    for name in admin billing pay_api; do port_var=${name^^}_PORT && check_port "$name" "${!port_var}"; done
  fi

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

  ensure_supervisor
  if behind_nginx; then write_nginx_conf; fi
  if [ "$STRIPE_OFFLINE" = 1 ]; then cmd_start localstripe; fi
  # every copy (WORKER_COPIES, BILLING_COPIES, PAY_API_COPIES) at once, then each until it is
  # ready; nginx last, in front of ready copies only
  launch mail billing billing-worker pay_api pay_api-worker admin
  await_ready mail billing pay_api admin
  if behind_nginx; then cmd_start nginx; fi
  # "up" means billing holds the admin's catalog: one ETL pass now, then the ETL on its schedule
  if ! "$PY" -m etl --once >>"$LOG_DIR/etl.log" 2>&1; then
    say "the first copy of the catalog to billing failed; the end of $LOG_DIR/etl.log:"
    tail -n 20 "$LOG_DIR/etl.log" >&2
    return 1
  fi
  cmd_start etl
  trap - EXIT
  echo "Cinema Billing is up:"
  print_urls
}

cmd_down() {
  local datastore
  if supervisor_runs; then
    # every program at once (TERM, then KILL after 5 s); "stopped NAME" for each that ran
    { ctl stop all 2>/dev/null || true; } |
      awk -F': ' '$2 == "stopped" { sub(/^.*:/, "", $1); print "stopped " $1 }' >&2
    ctl shutdown >/dev/null 2>&1 || true
    for _ in $(seq 50); do [ -S "$SUPERVISOR_SOCKET" ] || break; sleep 0.1; done
  fi
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
  # one line a process that ran: "NAME: running (pid N)" or "NAME: stopped"
  if [ -z "$(running_services)" ]; then
    echo "Cinema Billing is not running (data folder $DATA_DIR); make up starts it"
    return 0
  fi
  supervisor_status | awk '$2 == "RUNNING" { print $1 ": running (pid " $3 ")" }
    $2 != "RUNNING" && $2 != "STOPPED" { print $1 ": stopped" }'
}

cmd_logs() {
  # every service's log, or one; JSON lines (localstripe: plain text), followed until Ctrl-C
  local files=("$LOG_DIR"/*.log) name
  if [ -n "${1:-}" ]; then
    files=()
    for name in $(copies_of "$1"); do files+=("$LOG_DIR/$name.log"); done
  fi
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
  stop) shift; cmd_stop "$@" ;;
  kill) shift; cmd_stop KILL "$@" ;;
  run) cmd_run "$2" ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  env) cmd_env ;;
  *) say "usage: $0 up [--fresh]|down|reset|datastores|stop-datastores|start|stop|kill NAME...|status|logs [NAME]|env"; exit 2 ;;
esac
