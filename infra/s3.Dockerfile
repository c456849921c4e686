# The local stand-in for an S3 service in docker-compose.yml: moto's S3 server (PyPI moto), where no MinIO image
# can be pulled (infra/docker-compose.minio.yml swaps in MinIO). It keeps objects in memory: for tests and
# demos on one machine, not for data that must survive a restart.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
COPY infra/docker/certs/ /etc/covid-xray/certs/
COPY constraints.txt /tmp/constraints.txt
RUN set -e; ca=/etc/covid-xray/certs/host-ca.crt; [ -f "$ca" ] && export PIP_CERT="$ca"; \
    python3 -m venv /opt/venv && pip install -c /tmp/constraints.txt "moto[s3]==5.2.5" flask flask-cors
RUN useradd --system s3
USER s3
EXPOSE 9000
CMD ["moto_server", "-H", "0.0.0.0", "-p", "9000"]
