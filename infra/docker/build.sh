#!/usr/bin/env bash
# Build the project's images from the base of infra/docker/base-image.sh:
#   covid-xray/step:cpu      every pipeline step (infra/Dockerfile, CPU variant; configs/docker.yaml)
#   covid-xray/mlflow:3.17.2 the shared MLflow server (infra/mlflow.Dockerfile)
#   covid-xray/s3:moto       the local S3 stand-in (infra/s3.Dockerfile)
#   covid-xray/postgres:15   MLflow's backend store (infra/postgres.Dockerfile)
#
#   infra/docker/build.sh [step|mlflow|s3|postgres ...]     (default: all four)
#
# pip inside the builds uses the public index with the host's CA bundle (copied to infra/docker/certs/, ignored).
# The legacy builder (DOCKER_BUILDKIT=0) works with any dockerd without the buildx plugin; unchanged layers are
# reused, so a rebuild after a code change only copies the code.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"
base="$(infra/docker/base-image.sh)"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt infra/docker/certs/host-ca.crt
build() {  # name dockerfile build-args...
  local tag="$1" file="$2"; shift 2
  local start=$SECONDS
  docker build -q -f "$file" --build-arg BASE_IMAGE="$base" "$@" -t "$tag" . > /dev/null
  echo "built $tag in $((SECONDS - start)) s"
}
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(step mlflow s3 postgres)
for target in "${targets[@]}"; do
  case "$target" in
    step) build covid-xray/step:cpu infra/Dockerfile --build-arg VARIANT=cpu --build-arg EXTRAS=docker \
            --build-arg TENSORFLOW=tensorflow==2.21.0 ;;
    mlflow) build covid-xray/mlflow:3.17.2 infra/mlflow.Dockerfile ;;
    s3) build covid-xray/s3:moto infra/s3.Dockerfile ;;
    postgres) build covid-xray/postgres:15 infra/postgres.Dockerfile ;;
    *) echo "build: unknown image '$target' (step, mlflow, s3, postgres)" >&2; exit 2 ;;
  esac
done
