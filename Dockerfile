# syntax=docker/dockerfile:1
#
# One image for the operator and the load-test workers: ENTRYPOINT `mothership`,
# so the operator Deployment runs `mothership operator ...` and worker pods run
# `mothership worker ...`.
#
# Stage 1 builds wheels for the project and every dependency, then installs them
# into a virtualenv. Stage 2 copies only that virtualenv onto the same slim base:
# no compiler, no pip cache, no wheels, no source tree.
#
# Runtime contract (the Helm chart and the operator's Job builder rely on it):
# - runs as UID/GID 65532 (numeric, so `runAsNonRoot` can be verified);
# - works with a read-only root filesystem: bytecode is compiled at build time,
#   PYTHONDONTWRITEBYTECODE stops any write attempt, HOME and TMPDIR are /tmp,
#   which the pod mounts as an emptyDir.
#
# Size estimate (no Docker on the build machine, so computed, not measured):
#   `pip install --only-binary=:all: .` into a fresh Python 3.11 venv on
#   linux/amd64, then `du -sh` of the venv = 228 MB, of which pip+setuptools
#   (removed below) are 26 MB, leaving ~200 MB (~85 MB of it is .pyc; the
#   `kubernetes` client alone is 126 MB). The python:3.11-slim-bookworm base is
#   ~130 MB uncompressed. Image ~330 MB uncompressed (registry layers compress to roughly a third).
#   See docs/kubernetes.md "Image size" to redo the estimate.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --wheel-dir /wheels . \
 && python -m venv /opt/mothership \
 && /opt/mothership/bin/pip install --no-index --find-links /wheels mothership \
 && /opt/mothership/bin/pip uninstall --yes pip setuptools \
 && /opt/mothership/bin/mothership --help > /dev/null

FROM ${PYTHON_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="mothership" \
      org.opencontainers.image.description="Kubernetes operator for multitenant apps and distributed HTTP + WebSocket load tests" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# A passwd entry for 65532, so getpass/pwd lookups (kopf's peer identity) work.
RUN groupadd --gid 65532 mothership \
 && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
            --shell /usr/sbin/nologin mothership
COPY --from=build /opt/mothership /opt/mothership
ENV PATH=/opt/mothership/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /tmp
USER 65532:65532
# 8080: operator /metrics and /healthz; 9090: worker /metrics, /snapshot and control.
EXPOSE 8080 9090
ENTRYPOINT ["mothership"]
CMD ["operator"]
