# The serving image of one registered model, built by `covid-xray build-image` (covid_xray/ops/serving_image.py) from
# a context it prepares: model/ (the MLflow model, downloaded from the registry) and scoring_app.py (the app
# `covid-xray serve` runs: MLflow's scoring server behind the request-body limit).
#   docker run -p 127.0.0.1:8080:8080 covid-xray/serve:v3      then POST to http://127.0.0.1:8080/invocations
#   -e COVID_XRAY_MAX_BODY_MB=64 raises the body limit (default 32).
# The base is the project's step image (infra/docker/build.sh step): Python 3.11 with the pinned requirements. The
# model runs the library code logged with it (its code_paths), not the base's copy: PYTHONPATH is cleared.
ARG BASE_IMAGE=covid-xray/step:cpu
FROM ${BASE_IMAGE}
COPY model /srv/model
COPY scoring_app.py /srv/scoring_app.py
ENV PYTHONPATH= COVID_XRAY_MODEL_PATH=/srv/model COVID_XRAY_MAX_BODY_MB=32 TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONWARNINGS=ignore
WORKDIR /srv
# The server has no login: it runs as nobody, with a writable home for Keras' and MLflow's caches.
ENV HOME=/tmp
USER 65534:65534
EXPOSE 8080
CMD ["python", "-m", "uvicorn", "--host", "0.0.0.0", "--port", "8080", "--app-dir", "/srv", "scoring_app:app"]
