# The shared MLflow tracking server of docker-compose.yml: the project's pinned MLflow with its basic-auth app,
# the PostgreSQL driver, and boto3 for the S3 artifact store (also used by the compose file's bucket job).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    MLFLOW_DISABLE_TELEMETRY=true PYTHONUNBUFFERED=1
COPY infra/docker/certs/ /etc/covid-xray/certs/
COPY constraints.txt /tmp/constraints.txt
RUN set -e; ca=/etc/covid-xray/certs/host-ca.crt; [ -f "$ca" ] && export PIP_CERT="$ca"; \
    python3 -m venv /opt/venv && pip install -c /tmp/constraints.txt "mlflow[auth]==3.17.2" psycopg2-binary boto3
COPY infra/docker/mlflow-entrypoint.sh /usr/local/bin/mlflow-entrypoint
RUN useradd --system --home-dir /var/lib/mlflow --create-home mlflow
USER mlflow
WORKDIR /var/lib/mlflow
ENTRYPOINT ["/usr/local/bin/mlflow-entrypoint"]
