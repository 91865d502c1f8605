#!/bin/sh
# The one install step for cxpulse: the Dockerfile and CI both run this file.
#
#   deploy/install.sh worker   the worker image: requirements.lock, then cxpulse[worker]
#   deploy/install.sh report   the report image: requirements-report.lock, then cxpulse[report]
#   deploy/install.sh --dev    both locks, then cxpulse editable with its [dev] extra (CI, ./dev)
#
# Each image is the base install plus the extras its line below names, and its lock pins exactly
# their dependency closure (tests/unit/test_deploy.py). The worker image carries no matplotlib
# or numpy: the weekly `cxpulse report` runs from the report image. A storefront service that
# only produces events installs plain `cxpulse`, without any extra.
#
# PYTHON picks the interpreter whose environment receives the packages
# (default: python3 on PATH), e.g. PYTHON=.venv/bin/python sh deploy/install.sh --dev
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}

case "${1:-}" in
    worker) extras=worker lock=requirements.lock ;;
    report) extras=report lock=requirements-report.lock ;;
    --dev)
        # The dev extra holds every extra: both locks apply, and they constrain it, so test tools
        # can never move a runtime pin (the two locks pin their shared packages alike).
        "$python" -m pip install --no-cache-dir -r "$root/requirements.lock" -r "$root/requirements-report.lock"
        "$python" -m pip install --no-cache-dir -c "$root/requirements.lock" -c "$root/requirements-report.lock" \
            -e "$root[dev]"
        "$python" -m pip check
        exit 0 ;;
    *)
        echo "usage: deploy/install.sh worker|report|--dev" >&2
        exit 2 ;;
esac

"$python" -m pip install --no-cache-dir -r "$root/$lock"
"$python" -m pip install --no-cache-dir --no-deps "$root[$extras]"
# Fails when the lock misses part of the dependency closure.
"$python" -m pip check
