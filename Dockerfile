# cxpulse stream worker: one `cxpulse worker` per container.
# Build from the repository root:   docker build -t cxpulse:0.1.0 .
# Dependencies come from requirements.lock through deploy/install.sh, the same
# step CI runs, so the image and the tested environment cannot differ. It holds
# the base install with the worker and report extras: `cxpulse worker`, and a
# scheduled `cxpulse report` from the same image (tests/integration/test_install.py
# installs the same way and runs every command).

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/cxpulse
WORKDIR /src
COPY requirements.lock pyproject.toml ./
COPY deploy/install.sh deploy/install.sh
COPY streams streams
RUN PYTHON=/opt/cxpulse/bin/python sh deploy/install.sh

FROM python:3.11-slim-bookworm
# A fixed numeric uid lets Kubernetes' runAsNonRoot verify the user.
RUN groupadd --system --gid 10001 cxpulse \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/cxpulse --shell /usr/sbin/nologin cxpulse \
    && mkdir -p /var/lib/cxpulse && chown 10001:10001 /var/lib/cxpulse
COPY --from=build /opt/cxpulse /opt/cxpulse
ENV PATH=/opt/cxpulse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CXPULSE_METRICS_HOST=0.0.0.0 \
    CXPULSE_METRICS_PORT=9400
# Faust keeps its local table data under the working directory.
WORKDIR /var/lib/cxpulse
USER 10001:10001
EXPOSE 9400
# /ready is 200 once the worker holds partitions and has recovered their state.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('CXPULSE_METRICS_PORT', '9400'), timeout=2)"
# SIGTERM (Docker's default stop signal) flushes state and commits offsets, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["cxpulse"]
CMD ["worker"]
