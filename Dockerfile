# syntax=docker/dockerfile:1
# The operator image: dependencies pinned by hash from requirements.lock, no build tools in the final
# stage, a non-root user, and a root filesystem that may be mounted read-only.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-deps --require-hashes --only-binary=:all: -r /tmp/requirements.lock
COPY operator/filecleanup /opt/app/filecleanup
RUN /opt/venv/bin/python -m compileall -q /opt/app

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="filecleanup-operator" \
      org.opencontainers.image.description="Deletes the storage keys listed in FileCleanup resources" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/app /opt/app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532: the conventional "nonroot" user; the chart's securityContext uses the same IDs.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["python", "-m", "filecleanup"]
