#!/usr/bin/env bash
# Runs every fuzz target for a fixed time (FUZZ_SECONDS, default 60) with
# cargo-fuzz (libFuzzer). The machine's toolchain is stable, so nightly-only
# flags are enabled with RUSTC_BOOTSTRAP; the fuzz crate is not part of the
# main build. Findings land in fuzz/artifacts/<target>/; each one becomes a
# regression test. Prints the executions per target.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${FUZZ_SECONDS:-60}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
status=0
for target in $targets; do
  log="fuzz/artifacts/$target.log"
  mkdir -p "fuzz/artifacts/$target"
  if cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  [ -n "$execs" ] || execs=$(grep -Eo '#[0-9]+' "$log" | tail -1 | tr -d '#')
  echo "fuzz: $target: $result, ${execs:-?} executions in ${seconds}s (log: $log)"
done
exit "$status"
