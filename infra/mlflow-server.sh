#!/usr/bin/env bash
# A shared MLflow tracking server: PostgreSQL as the backend store, a local folder or S3 as the artifact store.
#
#   infra/mlflow-server.sh start     # starts PostgreSQL (unless DATABASE_URL is set) and `mlflow server`
#   infra/mlflow-server.sh stop      # stops both, by the PIDs recorded at start
#   infra/mlflow-server.sh status
#   infra/mlflow-server.sh purge     # stop, then delete the database cluster this script created, and the state
#
# Then point the pipeline at it: `export MLFLOW_TRACKING_URI=http://127.0.0.1:5000` (or tracking.uri in the config).
#
# Settings (environment):
#   MLFLOW_SERVER_HOME     state: pid files, logs, artifacts, database   (default .covid-xray/mlflow-server)
#   MLFLOW_HOST, MLFLOW_PORT                                              (default 127.0.0.1, 5000)
#   PGPORT                 port of the PostgreSQL this script starts      (default 5433)
#   PGPASSWORD             its password on the first start (default: random, kept in $MLFLOW_SERVER_HOME/postgres.password)
#   DATABASE_URL           use this PostgreSQL instead, e.g. postgresql://USER:PASSWORD@db:5432/mlflow
#   ARTIFACTS_DESTINATION  default $MLFLOW_SERVER_HOME/artifacts; s3://bucket/prefix for S3 or MinIO
#                          (with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, MLFLOW_S3_ENDPOINT_URL; needs boto3)
# Needs: PostgreSQL server binaries (Debian: apt-get install postgresql) unless DATABASE_URL is set, and
# psycopg2 in the Python environment (pip install -e ".[server]").
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true
state="$(realpath -m "${MLFLOW_SERVER_HOME:-.covid-xray/mlflow-server}")"
host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"
pgport="${PGPORT:-5433}"
python="${PYTHON:-$(command -v python)}"
mkdir -p "$state"

die() { echo "mlflow-server: error: $*" >&2; exit 1; }

pg_bin() {
  local dir
  for dir in "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
  done
  die "PostgreSQL server binaries not found (Debian: apt-get install postgresql), or set DATABASE_URL"
}

# PostgreSQL refuses to run as root: as root, run it as the 'postgres' user (Debian's package creates it), with
# the database cluster in that user's home, /var/lib/postgresql, where Debian keeps its own clusters.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pgdata() {
  if [ -f "$state/pgdata.path" ]; then cat "$state/pgdata.path"; return; fi
  local dir="$state/pgdata"
  if [ "$(id -u)" = 0 ]; then
    getent passwd postgres > /dev/null || die "running as root needs the 'postgres' user (apt-get install postgresql)"
    dir="$(runuser -u postgres -- mktemp -d /var/lib/postgresql/covid-xray-mlflow.XXXXXX)"
  fi
  echo "$dir" > "$state/pgdata.path"
  echo "$dir"
}

# The database password: PGPASSWORD when set, else one generated on the first start and kept in
# $state/postgres.password (mode 600). Every connection, local ones too, needs it (scram-sha-256).
pg_password() {
  local file="$state/postgres.password"
  if [ ! -s "$file" ]; then
    (umask 077; if [ -n "${PGPASSWORD:-}" ]; then printf '%s\n' "$PGPASSWORD"
                else "$python" -c 'import secrets; print(secrets.token_urlsafe(24))'; fi > "$file")
  fi
  head -1 "$file"
}

start_postgres() {
  local bin data pwfile
  bin="$(pg_bin)"
  data="$(pgdata)"
  PGPASSWORD="$(pg_password)"; export PGPASSWORD
  if [ ! -f "$data/PG_VERSION" ]; then
    pwfile="$(as_pg mktemp)"
    printf '%s\n' "$PGPASSWORD" | as_pg tee "$pwfile" > /dev/null
    as_pg "$bin/initdb" -D "$data" -U mlflow --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 > "$state/initdb.log" 2>&1 \
      || { as_pg rm -f "$pwfile"; die "initdb failed, see $state/initdb.log"; }
    as_pg rm -f "$pwfile"
  fi
  as_pg "$bin/pg_ctl" -D "$data" -l "$data/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pgport -k $data" start > /dev/null \
    || die "PostgreSQL did not start on 127.0.0.1:$pgport: $(tail -5 "$data/postgres.log" 2>/dev/null)"
  head -1 "$data/postmaster.pid" > "$state/postgres.pid"
  as_pg "$bin/psql" -h 127.0.0.1 -p "$pgport" -U mlflow -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='mlflow'" | grep -q 1 \
    || as_pg "$bin/createdb" -h 127.0.0.1 -p "$pgport" -U mlflow mlflow
  echo "postgresql://mlflow:$PGPASSWORD@127.0.0.1:$pgport/mlflow"
}

start() {
  [ -f "$state/mlflow.pid" ] && kill -0 "$(cat "$state/mlflow.pid")" 2>/dev/null && die "already running (pid $(cat "$state/mlflow.pid"))"
  "$python" -c "import psycopg2" 2>/dev/null || die "psycopg2 missing in $python: pip install -e '.[server]'"
  local db="${DATABASE_URL:-}"
  [ -n "$db" ] || db="$(start_postgres)"
  local artifacts="${ARTIFACTS_DESTINATION:-$state/artifacts}"
  # Its own session, so that stop ends the server and its workers together.
  # The store URI (it holds the password) by environment, not on the command line that `ps` shows.
  MLFLOW_BACKEND_STORE_URI="$db" setsid "$python" -m mlflow server --artifacts-destination "$artifacts" \
    --host "$host" --port "$port" > "$state/mlflow.log" 2>&1 < /dev/null &
  echo $! > "$state/mlflow.pid"
  for _ in $(seq 120); do
    if "$python" -c "import urllib.request; urllib.request.urlopen('http://$host:$port/health', timeout=2)" 2>/dev/null; then
      echo "MLFLOW_TRACKING_URI=http://$host:$port"
      echo "backend store: ${db%%://*}://…@${db#*@}  artifacts: $artifacts  pids: mlflow $(cat "$state/mlflow.pid")$( [ -f "$state/postgres.pid" ] && echo ", postgres $(cat "$state/postgres.pid")")"
      return
    fi
    kill -0 "$(cat "$state/mlflow.pid")" 2>/dev/null || die "mlflow server exited, see $state/mlflow.log"
    sleep 1
  done
  die "mlflow server did not answer on http://$host:$port/health within 120 s, see $state/mlflow.log"
}

stop() {
  if [ -f "$state/mlflow.pid" ]; then
    local pid; pid="$(cat "$state/mlflow.pid")"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$state/mlflow.pid"
  fi
  if [ -f "$state/postgres.pid" ]; then
    local data; data="$(cat "$state/pgdata.path")"
    as_pg "$(pg_bin)/pg_ctl" -D "$data" -m fast -w stop > /dev/null 2>&1 || kill -TERM "$(cat "$state/postgres.pid")" 2>/dev/null || true
    rm -f "$state/postgres.pid"
  fi
  echo "stopped"
}

status() {
  local name
  for name in mlflow postgres; do
    if [ -f "$state/$name.pid" ] && kill -0 "$(cat "$state/$name.pid")" 2>/dev/null; then
      echo "$name: running (pid $(cat "$state/$name.pid"))"
    else
      echo "$name: not running"
    fi
  done
}

purge() {
  stop
  if [ -f "$state/pgdata.path" ]; then rm -rf "$(cat "$state/pgdata.path")"; fi
  rm -rf "$state"
  echo "purged $state"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  purge) purge ;;
  *) echo "usage: $0 start|stop|status|purge" >&2; exit 2 ;;
esac
