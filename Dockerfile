# The operator image: dependencies pinned by hash from requirements.lock, no build tools and no pip in
# the final stage, any non-root UID (no passwd entry needed), a root filesystem that may be read-only.
# `make image` builds it (tools/image/image.sh); see docs/development.md, "The image".

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# .build/pip-ca.crt (optional, build stage only): the CA bundle pip trusts where the registries sit
# behind a TLS-inspecting proxy; image.sh puts the machine's bundle there.
COPY requirements.lock .build/pip-ca.crt* /tmp/build/
RUN if [ -s /tmp/build/pip-ca.crt ]; then export PIP_CERT=/tmp/build/pip-ca.crt; fi \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-deps --require-hashes --only-binary=:all: -r /tmp/build/requirements.lock \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools
COPY tools/image/prune_site_packages.py /tmp/build/
RUN /opt/venv/bin/python /tmp/build/prune_site_packages.py /opt/venv
COPY operator/filecleanup /opt/app/filecleanup
RUN /opt/venv/bin/python -m compileall -q /opt/app

FROM ${PYTHON_IMAGE}
# VERSION and REVISION: the release's version and commit, which `make release` passes (dev otherwise).
ARG VERSION=dev
ARG REVISION=""
LABEL org.opencontainers.image.title="filecleanup-operator" \
      org.opencontainers.image.description="Deletes the storage keys listed in FileCleanup resources" \
      org.opencontainers.image.source="https://github.com/filecleanup/filecleanup-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/app /opt/app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532: the conventional "nonroot" user; the chart's securityContext uses the same IDs. Numeric, so
# that the kubelet can check runAsNonRoot against it.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["python", "-m", "filecleanup"]
