# The shared MLflow tracking server of docker-compose.yml: the project's pinned MLflow plus the PostgreSQL
# driver and boto3 for an S3/MinIO artifact store.
FROM python:3.11-slim
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir -c /tmp/constraints.txt mlflow==3.17.2 psycopg2-binary boto3
ENV MLFLOW_DISABLE_TELEMETRY=true
