#!/bin/sh
# The one install step for cxpulse: the Dockerfile and CI both run this file.
#
#   deploy/install.sh          runtime pins from requirements.lock, then cxpulse itself (the image)
#   deploy/install.sh --dev    the same runtime pins, then cxpulse editable with its [dev] extra (CI)
#
# The image's runtime is the base install plus the extras below: the worker's, and the weekly
# report's (a scheduled `cxpulse report` runs from the same image). requirements.lock pins exactly
# their dependency closure (tests/unit/test_deploy.py); a storefront service that only produces
# events installs plain `cxpulse`, without either.
#
# PYTHON picks the interpreter whose environment receives the packages
# (default: python3 on PATH), e.g. PYTHON=.venv/bin/python sh deploy/install.sh --dev
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
extras=worker,report

"$python" -m pip install --no-cache-dir -r "$root/requirements.lock"
if [ "${1:-}" = "--dev" ]; then
    # The lock constrains the dev extra too, so test tools can never move a runtime pin.
    "$python" -m pip install --no-cache-dir -c "$root/requirements.lock" -e "$root[dev]"
else
    "$python" -m pip install --no-cache-dir --no-deps "$root[$extras]"
fi
# Fails when requirements.lock misses part of the dependency closure.
"$python" -m pip check
