# The trainer: `pip install '.[trainer]'` (tensorflow-cpu, keras, tf2onnx, onnx), run as a
# one-off job that writes new model versions into the shared models folder.
#
#   docker build -f deploy/trainer.Dockerfile -t option-pricing-trainer:0.1.0 .   (repo root)
#   docker compose -f deploy/docker-compose.yml --profile train run trainer train --model pinn

# Build stage: as in server.Dockerfile, only the finished venv goes on.
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared shared
COPY trainer trainer
RUN /opt/venv/bin/pip install '.[trainer]'

FROM python:3.11.13-slim-bookworm
# A home folder: Keras and matplotlib keep their settings and caches there. /data is the
# forecasters' CSV folder, the user's so that a fresh volume mounted there is writable.
RUN groupadd --gid 10001 pricing \
    && useradd --uid 10001 --gid pricing --create-home --shell /usr/sbin/nologin pricing \
    && install -d -o pricing -g pricing /data
COPY --from=build /opt/venv /opt/venv
# The same initial models as the server image, at the same path, so whichever container first
# mounts a fresh `models` volume fills it the same way; training adds versions after these.
COPY --chown=pricing:pricing models /srv/pricing/models
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
# `trainer train ...` without --output writes to models/ here, the volume's mount point.
WORKDIR /srv/pricing
USER pricing
ENTRYPOINT ["trainer"]
CMD ["--help"]
