#!/usr/bin/env bash
# The compose stack of infra/docker-compose.yml with its secrets, for Compose v2 (`docker compose`) or v1
# (`docker-compose`, Debian's 1.29).
#
#   infra/compose.sh up       secrets file when absent, images (infra/docker/build.sh), start, wait for MLflow
#   infra/compose.sh env      print the variables a client of the stack needs (source it: eval "$(... env)"); artifacts
#                             stream through MLflow (its presigned S3 URLs name the compose network's s3:9000)
#   infra/compose.sh ps|logs  as in compose
#   infra/compose.sh down     stop and remove the containers and the network (the database volume stays)
#   infra/compose.sh purge    down, and remove the volumes too
#
# Secrets: POSTGRES_PASSWORD, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, MLFLOW_ADMIN_PASSWORD, MLFLOW_FLASK_SECRET_KEY
# come from the environment or from the env file (COVID_XRAY_ENV_FILE, default infra/.env, git-ignored). On the
# first `up` the file is written (mode 600) with the values set in the environment and random ones for the rest.
# Other settings: COVID_XRAY_BIND_ADDRESS (127.0.0.1), MLFLOW_PORT (5000), S3_PORT (9000), S3_BUCKET (covid-xray),
# MLFLOW_ADMIN_USERNAME (admin), COMPOSE_PROJECT_NAME (covid-xray), COVID_XRAY_S3 (moto; minio where pullable).
set -euo pipefail
cd "$(dirname "$0")/.."
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-covid-xray}"
env_file="$(realpath -m "${COVID_XRAY_ENV_FILE:-infra/.env}")"
SECRETS=(POSTGRES_PASSWORD S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY MLFLOW_ADMIN_PASSWORD MLFLOW_FLASK_SECRET_KEY)
die() { echo "compose: error: $*" >&2; exit 1; }

if docker compose version > /dev/null 2>&1; then compose=(docker compose)
# v1 is a Python program of the system's: keep a project's PYTHONPATH out of its imports.
elif command -v docker-compose > /dev/null; then compose=(env -u PYTHONPATH -u PYTHONHOME docker-compose)
else die "neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed (Debian: apt-get install docker-compose)"; fi
compose+=(--env-file "$env_file" -f infra/docker-compose.yml)
# COVID_XRAY_S3=minio: MinIO (pulled from a registry) instead of moto's server (infra/docker-compose.minio.yml).
[ "${COVID_XRAY_S3:-moto}" = minio ] && compose+=(-f infra/docker-compose.minio.yml)

write_env_file() {
  [ -f "$env_file" ] && return
  mkdir -p "$(dirname "$env_file")"
  (umask 077; exec > "$env_file"
   echo "# Secrets of infra/docker-compose.yml, written by infra/compose.sh on $(date -u +%FT%TZ). Never commit this file."
   for name in "${SECRETS[@]}"; do
     value="${!name:-}"
     [ -n "$value" ] || value="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
     echo "$name=$value"
   done)
  echo "compose: wrote the secrets to $env_file (mode 600)" >&2
}

# Values from the environment win over the file, as in compose itself.
load_env() {
  [ -f "$env_file" ] || die "$env_file is missing: run 'infra/compose.sh up' first"
  local name value
  while IFS='=' read -r name value; do
    case "$name" in ''|\#*) continue ;; esac
    [ -n "${!name:-}" ] || export "$name=$value"
  done < "$env_file"
}

wait_healthy() {
  local id state
  id="$("${compose[@]}" ps -q mlflow)"
  [ -n "$id" ] || die "the mlflow container is not running: $("${compose[@]}" ps)"
  for _ in $(seq 300); do
    state="$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$id" 2>/dev/null || echo gone)"
    [ "$state" = "running healthy" ] && return
    case "$state" in "running starting") ;; *) break ;; esac
    sleep 1
  done
  "${compose[@]}" logs --tail 40 >&2 || true
  die "MLflow did not become healthy (state: $state)"
}

case "${1:-}" in
  up)
    write_env_file
    load_env
    COVID_XRAY_BASE_IMAGE="$(infra/docker/base-image.sh)"; export COVID_XRAY_BASE_IMAGE
    infra/docker/build.sh postgres s3 mlflow >&2
    if [ "${COVID_XRAY_S3:-moto}" = minio ]; then "${compose[@]}" pull s3 >&2; fi
    "${compose[@]}" up -d --no-build >&2
    wait_healthy
    echo "compose: MLflow is up on http://${COVID_XRAY_BIND_ADDRESS:-127.0.0.1}:${MLFLOW_PORT:-5000} (login required)" >&2
    ;;
  env)
    load_env
    # The addresses the running containers were published on (0.0.0.0 is reached on 127.0.0.1).
    mlflow="$("${compose[@]}" port mlflow 5000 | sed 's/^0\.0\.0\.0:/127.0.0.1:/')"
    s3="$("${compose[@]}" port s3 9000 | sed 's/^0\.0\.0\.0:/127.0.0.1:/')"
    [ -n "$mlflow" ] && [ -n "$s3" ] || die "the stack is not running: infra/compose.sh up"
    printf 'export %s=%q\n' MLFLOW_TRACKING_URI "http://$mlflow" \
      MLFLOW_TRACKING_USERNAME "${MLFLOW_ADMIN_USERNAME:-admin}" MLFLOW_TRACKING_PASSWORD "$MLFLOW_ADMIN_PASSWORD" \
      S3_ENDPOINT_URL "http://$s3" S3_BUCKET "${S3_BUCKET:-covid-xray}" \
      S3_ACCESS_KEY_ID "$S3_ACCESS_KEY_ID" S3_SECRET_ACCESS_KEY "$S3_SECRET_ACCESS_KEY" \
      MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD false MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD false
    ;;
  ps|logs) load_env; "${compose[@]}" "$@" ;;
  down) load_env; "${compose[@]}" down --remove-orphans ;;
  purge) load_env; "${compose[@]}" down --volumes --remove-orphans ;;
  *) echo "usage: $0 up|env|ps|logs|down|purge" >&2; exit 2 ;;
esac
