#!/usr/bin/env bash
# Build the documentation: installs the docs extra into the active environment (or .venv),
# then sphinx-build with warnings as errors. LUCIDAX_DOCS_FAST=1: tutorials at reduced steps.
# Output: docs/_build/html/index.html
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
if [ "${LUCIDAX_DOCS_SKIP_INSTALL:-0}" != "1" ]; then
  python -m pip install --quiet -e ".[docs]"
fi
python -m sphinx -W --keep-going -n -j "${LUCIDAX_DOCS_JOBS:-auto}" -b html docs docs/_build/html "$@"
echo "docs: $(pwd)/docs/_build/html/index.html"
