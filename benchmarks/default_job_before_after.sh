#!/usr/bin/env bash
# The default job (covid-xray run --config configs/default.yaml) at two commits, side by side: two clones of this
# repository, started together on this machine, each with a cold image cache, its own state folder and data/raw
# (dvc update), run with this checkout's virtual environment. Prints each run's exit status and wall seconds.
#
#     bash benchmarks/default_job_before_after.sh [BEFORE=82e5890] [AFTER=HEAD] [WORK=/tmp/before-after]
#
# Then `python benchmarks/default_job_compare.py WORK` compares their manifests, splits and metrics.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
before=${1:-82e5890} after=${2:-HEAD} work=${3:-/tmp/before-after}
export ZENML_ANALYTICS_OPT_IN=false MLFLOW_DISABLE_TELEMETRY=true GX_ANALYTICS_ENABLED=false DVC_NO_ANALYTICS=1 TF_CPP_MIN_LOG_LEVEL=2
rm -rf "$work" && mkdir -p "$work"
for side in before after; do
  commit=${!side}
  git clone -q "$repo" "$work/$side" && git -C "$work/$side" checkout -q "$commit"
  (cd "$work/$side" && "$repo/.venv/bin/dvc" update data.dvc > /dev/null)
done
for side in before after; do
  (cd "$work/$side" && start=$(date +%s) && set +e &&
   PYTHONPATH=$PWD "$repo/.venv/bin/python" -m covid_xray.cli run --config configs/default.yaml --metrics-dir eval > run.log 2>&1
   echo "$side ${!side}: rc=$? seconds=$(( $(date +%s) - start ))" | tee done.txt) &
done
wait
