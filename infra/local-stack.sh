#!/usr/bin/env bash
# Registers by hand the local ZenML stack that `covid-xray run` registers on first use (covid_xray/stack.py):
# the default local orchestrator and artifact store, plus an MLflow experiment tracker.
# Usage: infra/local-stack.sh [TRACKING_URI]   (default: the project's SQLite store in .covid-xray/)
set -euo pipefail
cd "$(dirname "$0")/.."
export ZENML_ANALYTICS_OPT_IN=false MLFLOW_DISABLE_TELEMETRY=true
home="${COVID_XRAY_HOME:-$PWD/.covid-xray}"
export ZENML_CONFIG_PATH="${ZENML_CONFIG_PATH:-$home/zenml}" ZENML_REPOSITORY_PATH="${ZENML_REPOSITORY_PATH:-$home}"
uri="${1:-sqlite:///$home/mlflow.db}"
mkdir -p "$home"
[ -d "$home/.zen" ] || (cd "$home" && zenml init)
zenml experiment-tracker register covid-xray-mlflow --flavor=mlflow --tracking_uri="$uri" 2>/dev/null \
  || zenml experiment-tracker update covid-xray-mlflow --tracking_uri="$uri"
zenml stack register covid-xray-local -o default -a default -e covid-xray-mlflow 2>/dev/null || true
zenml stack set covid-xray-local
