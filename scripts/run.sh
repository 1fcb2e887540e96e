#!/usr/bin/env bash
# Runs Duet all-in-one (session-API + realtime-hub + browser client on one port, embedded SQLite under
# ./data, in-process bus) at http://127.0.0.1:8080/. Builds the browser client first when needed.
# Any setting can be passed through the environment: PORT=9000 DATABASE_URL=postgres://… ./scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v npm >/dev/null 2>&1; then
  if [ ! -d frontend/node_modules ] || [ frontend/package-lock.json -nt frontend/node_modules/.package-lock.json ]; then
    (cd frontend && npm ci --no-audit --no-fund)
  fi
  if [ ! -f frontend/dist/index.html ] || [ -n "$(find frontend/src frontend/package.json frontend/build.mjs -newer frontend/dist/index.html 2>/dev/null | head -1)" ]; then
    (cd frontend && npm run build)
  fi
else
  echo "run.sh: npm not found; serving without the browser client (install Node.js 20 + npm for it)" >&2
fi

exec cargo run --release -p duet "$@"
