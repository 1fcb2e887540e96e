#!/usr/bin/env bash
# Runs every fuzz target for $SECONDS_EACH seconds (default 330), one after the other, at the
# lowest CPU priority. Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain
# works with RUSTC_BOOTSTRAP=1. Logs go to fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p logs
for t in engine_text polling_payload sio_packet interview; do
  echo "== $t"
  RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz run "$t" -- \
    -max_total_time="${SECONDS_EACH:-330}" -max_len=4096 -print_final_stats=1 \
    >"logs/$t.log" 2>&1 && echo "$t: clean" || { echo "$t: FAILED (see fuzz/logs/$t.log)"; exit 1; }
  tail -n 12 "logs/$t.log" | grep -E "stat::|Done" || true
done
