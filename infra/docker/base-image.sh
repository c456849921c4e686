#!/usr/bin/env bash
# The base image the project's images are built FROM (infra/Dockerfile, infra/mlflow.Dockerfile, infra/s3.Dockerfile).
#
#   infra/docker/base-image.sh            # prints the image name, e.g. covid-xray/base:bookworm
#
# In order: the image when it is there already; the official python:3.11-slim-bookworm when a registry answers
# (tagged as the base); else a Debian bookworm made here with debootstrap (Python 3.11, venv, pip, CA certificates)
# and `docker import`ed, its tarball cached in .cache/docker/ (git-ignored) for the next time on this machine.
# Settings: COVID_XRAY_BASE_IMAGE (default covid-xray/base:bookworm), DEBIAN_MIRROR (default deb.debian.org),
# COVID_XRAY_DOCKER_CACHE (default .cache/docker: e.g. a folder outside the clone, kept between CI clones).
set -euo pipefail
cd "$(dirname "$0")/../.."
image="${COVID_XRAY_BASE_IMAGE:-covid-xray/base:bookworm}"
cache="${COVID_XRAY_DOCKER_CACHE:-.cache/docker}"
tarball="$cache/base-bookworm.tar.gz"
log() { echo "base-image: $*" >&2; }

if docker image inspect "$image" > /dev/null 2>&1; then echo "$image"; exit 0; fi
mkdir -p "$cache"
if [ ! -f "$tarball" ] && timeout 60 docker pull -q python:3.11-slim-bookworm > /dev/null 2>&1; then
  docker tag python:3.11-slim-bookworm "$image"
  log "using the official python:3.11-slim-bookworm as $image"
  echo "$image"; exit 0
fi
if [ ! -f "$tarball" ]; then
  command -v debootstrap > /dev/null || { log "error: no registry answered and debootstrap is missing (apt-get install debootstrap)"; exit 1; }
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  log "no registry: building a Debian bookworm root file system with debootstrap (about 70 s)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" > "$cache/debootstrap.log" 2>&1 \
    || { log "error: debootstrap failed, see $cache/debootstrap.log"; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | gzip -1 > "$tarball.part" && mv "$tarball.part" "$tarball"
fi
gzip -dc "$tarball" | docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$image" > /dev/null
log "imported $tarball as $image"
echo "$image"
