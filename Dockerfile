# cxpulse images, built from the repository root:
#
#   docker build -t cxpulse:0.1.0 .                              the worker image (the default target)
#   docker build --target report -t cxpulse-report:0.1.0 .       the weekly report's image
#
# The worker image holds the base install and the worker extra: `cxpulse worker`, `topics`,
# `simulate`, `initiative`; no matplotlib or numpy. The report image holds the base install and the
# report extra, for a scheduled `cxpulse report`. Each installs through deploy/install.sh from its
# own lock (requirements.lock, requirements-report.lock), the step CI runs too, so an image and the
# tested environment cannot differ (tests/integration/test_install.py replays each build and runs
# every command). With BuildKit (Docker's default builder) a build runs only the stages its target
# needs.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/cxpulse
WORKDIR /src
COPY requirements.lock requirements-report.lock pyproject.toml ./
COPY deploy/install.sh deploy/install.sh
COPY streams streams

FROM build AS build-report
RUN PYTHON=/opt/cxpulse/bin/python sh deploy/install.sh report

FROM build AS build-worker
RUN PYTHON=/opt/cxpulse/bin/python sh deploy/install.sh worker

# What both images share: the user, the environment, the entrypoint.
FROM python:3.11-slim-bookworm AS runtime
# A fixed numeric uid lets Kubernetes' runAsNonRoot verify the user.
RUN groupadd --system --gid 10001 cxpulse \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/cxpulse --shell /usr/sbin/nologin cxpulse \
    && mkdir -p /var/lib/cxpulse && chown 10001:10001 /var/lib/cxpulse
ENV PATH=/opt/cxpulse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/cxpulse
USER 10001:10001
ENTRYPOINT ["cxpulse"]

# One run per week, then exit: `docker run cxpulse-report:0.1.0 report --prometheus URL --out DIR`
# (docs/report.md); run without arguments it stops, exit 2, asking for --prometheus. No port, no
# health check.
FROM runtime AS report
COPY --from=build-report /opt/cxpulse /opt/cxpulse
CMD ["report"]

# The default target: last, so a plain `docker build .` gives the worker image.
FROM runtime AS worker
COPY --from=build-worker /opt/cxpulse /opt/cxpulse
ENV CXPULSE_METRICS_HOST=0.0.0.0 \
    CXPULSE_METRICS_PORT=9400
# Faust keeps its local table data under the working directory (/var/lib/cxpulse).
EXPOSE 9400
# /ready is 200 once the worker holds partitions and has recovered their state.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('CXPULSE_METRICS_PORT', '9400'), timeout=2)"
# SIGTERM (Docker's default stop signal) flushes state and commits offsets, then exits 0.
STOPSIGNAL SIGTERM
CMD ["worker"]
