#!/usr/bin/env bash
# The whole test suite. Installs what it needs on a fresh Debian machine (as root; otherwise it says what
# to install), then runs the Rust tests and the end-to-end tests (real socket.io-client, yjs and headless
# Chromium). Tests start their own throw-away PostgreSQL and Redis unless TEST_DATABASE_URL /
# TEST_REDIS_URL are set.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

need_pkgs=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v nginx >/dev/null 2>&1 || need_pkgs+=(nginx-light)
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs npm)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "test.sh: please install: ${need_pkgs[*]} (e.g. sudo apt-get install ${need_pkgs[*]})" >&2
    exit 1
  fi
fi

# Optional checkers for the deploy files (tests/cluster/deploy.test.mjs skips a check whose tool is
# missing): Debian's docker-compose for `docker-compose config`, PyPI's kubernetes-validate (pinned) in
# a venv under target/.
if ! command -v docker-compose >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test.sh: installing docker-compose (to check docker-compose.yml)"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 ||
    echo "test.sh: docker-compose could not be installed; its check is skipped"
fi
kv="$root/target/tools/kubernetes-validate"
if [ ! -x "$kv/bin/kubernetes-validate" ]; then
  { python3 -m venv "$kv" && "$kv/bin/pip" install -q kubernetes-validate==1.37.0; } >/dev/null 2>&1 ||
    echo "test.sh: kubernetes-validate could not be installed (python3-venv, PyPI); its check is skipped"
fi
[ -x "$kv/bin/kubernetes-validate" ] && export KUBERNETES_VALIDATE="$kv/bin/kubernetes-validate"

echo "== npm packages"
(cd frontend && npm ci --no-audit --no-fund --loglevel=error)
(cd tests && npm ci --no-audit --no-fund --loglevel=error)
echo "== browser client"
(cd frontend && npm run build --silent)

echo "== Rust tests"
cargo build --workspace --all-targets --examples
cargo test --workspace --no-fail-fast

echo "== seed-protocol client (python-socketio)"
# A client of the original design, in the stack a seed-era user has: python-socketio (pinned in
# tests/py/requirements.txt) in a venv under target/, against the dev duet binary built above.
py="$root/target/tools/py"
if [ ! -x "$py/bin/python" ] || ! cmp -s tests/py/requirements.txt "$py/requirements.txt"; then
  rm -rf "$py"
  python3 -m venv "$py"
  "$py/bin/pip" install -q -r tests/py/requirements.txt
  cp tests/py/requirements.txt "$py/requirements.txt"
fi
"$py/bin/python" -m unittest discover -s tests/py -v

echo "== end-to-end and scale-out tests"
# cluster/ runs the scaled services as native processes (scripts/cluster.sh) with the dev binaries
# built above, and checks the deploy files.
export DUET_REPO="$root"
# A test that hangs fails with its name (--test-timeout); a file that never exits (a timer or socket
# left open) is stopped by `timeout` rather than holding CI to its limit.
(cd tests && timeout --kill-after=30 1800 node --test --test-concurrency=1 --test-timeout=600000 --test-reporter=spec js/ cluster/) || {
  rc=$?
  [ "$rc" = 124 ] && echo "test.sh: the end-to-end tests did not finish within 30 minutes (a test file that never exits?)" >&2
  exit "$rc"
}
