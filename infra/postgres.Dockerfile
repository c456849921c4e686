# PostgreSQL 15 (Debian bookworm) for MLflow's backend store in docker-compose.yml, where the official
# postgres image cannot be pulled. Password authentication only (scram-sha-256), no trust entries.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data
COPY infra/docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/15/bin:$PATH
USER postgres
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
