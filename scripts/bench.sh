#!/usr/bin/env bash
# Benchmarks that need a baseline program from Debian's packages, installed
# here when missing (timing belongs in benchmarks, never in `.ci/run`).
#
#   scripts/bench.sh webhook   webhook delivery vs the proxy's request rate,
#                              receiver nginx `return 204` (knobs: see
#                              benches/webhook_keeps_up.rs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need() {
  local missing=()
  for program in "$@"; do
    command -v "$program" >/dev/null 2>&1 || [[ -x "/usr/sbin/$program" ]] || missing+=("$program")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "bench.sh: installing ${missing[*]} from Debian's packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]/nginx/nginx-light}" >/dev/null
  fi
}

case "${1:-}" in
  webhook)
    need nginx
    exec cargo bench --features proxy --bench webhook_keeps_up
    ;;
  *)
    echo "usage: scripts/bench.sh webhook" >&2
    exit 2
    ;;
esac
