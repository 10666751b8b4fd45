#!/usr/bin/env bash
# Quick start, step 1: everything from a fresh machine to a running demo.
# Starts (or installs) the services, builds the Python environment, creates and migrates the
# database, then runs `commdesk-billing demo` (which starts the API and drives it over HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-services.sh
bash scripts/bootstrap.sh
export BILLING_DATABASE_URL="${BILLING_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/commdesk_billing}"
db=$(.venv/bin/python - <<'PY'
import os
from sqlalchemy.engine import make_url
print(make_url(os.environ["BILLING_DATABASE_URL"]).database)
PY
)
if ! psql -h 127.0.0.1 -U postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" postgres | grep -q 1; then
  createdb -h 127.0.0.1 -U postgres "$db"
  echo "quickstart: created database $db"
fi
.venv/bin/commdesk-billing migrate
BILLING_LOG_JSON=false .venv/bin/commdesk-billing demo
