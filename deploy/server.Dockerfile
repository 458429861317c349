# The pricing server: `pip install '.[server]'` (onnxruntime, grpcio, redis, cachetools; no
# TensorFlow) with the committed models as its initial models.
#
#   docker build -f deploy/server.Dockerfile -t option-pricing-server:0.1.0 .   (repo root)
#   docker run -p 50051:50051 option-pricing-server:0.1.0
#
# Configured by the PRICING_* environment variables (README's flag table); the ones set here
# are the container's defaults. `.venv/bin/python deploy/image_size.py` prints what the
# server extra adds to the base image.

# Build stage: the package is built and installed into a venv here, with pip's build
# dependencies (setuptools) and the source tree, none of which the runtime stage keeps.
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the server's wheel holds: trainer/ stays out, so it cannot even be imported.
COPY pyproject.toml README.md ./
COPY shared shared
COPY server server
RUN /opt/venv/bin/pip install '.[server]'

FROM python:3.11.13-slim-bookworm
RUN groupadd --gid 10001 pricing \
    && useradd --uid 10001 --gid pricing --no-create-home --shell /usr/sbin/nologin pricing
COPY --from=build /opt/venv /opt/venv
COPY --chmod=755 deploy/healthcheck.py /usr/local/bin/pricing-healthcheck
COPY --chmod=755 deploy/seed_models.py /usr/local/bin/pricing-seed-models
# At the path where compose mounts the shared `models` volume: Docker copies these files, and
# their owner, into the volume when it is first created empty, so a fresh `docker compose up`
# serves the committed models and the trainer (same user) can add versions. Kubernetes does
# not copy: its models-seed Job runs pricing-seed-models instead.
COPY --chown=pricing:pricing models /srv/pricing/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PRICING_HOST=0.0.0.0 \
    PRICING_PORT=50051 \
    PRICING_METRICS_PORT=9100 \
    PRICING_MODELS_DIR=/srv/pricing/models
WORKDIR /srv/pricing
USER pricing
EXPOSE 50051 9100
# SERVING only once a model is loaded and warmed (grpc.health.v1); the start period covers it.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["pricing-healthcheck"]
CMD ["pricing-server"]
