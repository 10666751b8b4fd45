#!/usr/bin/env bash
# Python environment: uv from PyPI, then the locked dependencies into .venv.
# The image build (deploy/Dockerfile) runs this same script: BOOTSTRAP_SYNC_ARGS adds
# `uv sync` options there (e.g. "--no-default-groups --no-editable": the runtime dependencies
# only, the project installed as a package). Empty here: everything, dev tools included.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
if ! command -v uv >/dev/null || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
read -r -a extra <<<"${BOOTSTRAP_SYNC_ARGS:-}"
uv sync --frozen --quiet "${extra[@]}"
