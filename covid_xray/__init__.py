"""covid-xray: ingest public chest X-ray sources, train and check COVID-19 detectors, ship them through MLflow.

Packages by kind, in import order: each imports only those before it (import-linter checks it, see pyproject.toml):
`labels` < `sources` < `config` < `data` < `modeling` < `evaluation` < `serving` < `registry` < `ops`, then the
top-level `steps` and `pipelines`, then `cli`. zenml is imported only in `ops`, `steps`, `pipelines` and `cli`.
"""

import logging
import os

# Telemetry and download bars off before any of these libraries is imported.
for _name, _value in {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # one bar per downloaded artifact otherwise
}.items():
    os.environ.setdefault(_name, _value)

# faiss announces at INFO which CPU build it loads (AVX512, AVX2, generic): noise on a user's terminal.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

__version__ = "0.1.0"
