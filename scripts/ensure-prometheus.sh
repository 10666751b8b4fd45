#!/usr/bin/env bash
# Prometheus and promtool from Debian's `prometheus` package, for the alert-rule unit tests
# (`promtool test rules`) and the one test that runs a real Prometheus against the stack.
# Idempotent: does nothing when both are already installed. The package's own service is
# not started (nothing here needs it; each test runs its own Prometheus on a free port).
set -euo pipefail
if [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-prometheus: promtool is missing and installing it needs root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d refuses service starts while the package installs (a container has no init;
# a machine with one would otherwise start a Prometheus on :9090 we do not use).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
trap 'if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
/usr/bin/promtool --version | head -1
