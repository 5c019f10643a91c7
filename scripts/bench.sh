#!/usr/bin/env bash
# Benchmarks that need a baseline program from Debian's packages, installed
# here when missing (timing belongs in benchmarks, never in `.ci/run`).
#
#   scripts/bench.sh webhook   webhook delivery vs the proxy's request rate,
#                              receiver nginx `return 204` (knobs: see
#                              benches/webhook_keeps_up.rs)
#   scripts/bench.sh proxy     s3tap (verify + re-sign + B2 webhook) vs nginx
#                              `proxy_pass`, signed 1 KiB/64 KiB GET and PUT
#                              under wrk at c=1 and c=32: req/s and CPU per
#                              request (issue 14, goal 1; knobs BENCH_SECONDS,
#                              BENCH_ROUNDS, BENCH_CONNECTIONS, BENCH_CASES,
#                              BENCH_PERF_SECONDS; see benches/proxy_vs_nginx.rs)
#   scripts/bench.sh uploads   CPU-seconds per GiB of large uploads per
#                              payload mode vs the nginx hop and openssl's
#                              SHA-256 (issue 14, goal 3; BENCH_GIB, BENCH_MODES)
#   scripts/bench.sh fleet     fleet mode's cost: req/s, PUT latency and events/s
#                              end to end with the JetStream outbox (3-node
#                              cluster, 2 deliverers) vs a proxy delivering
#                              directly (issue 13; FLEET_SECONDS, FLEET_CONNECTIONS)
#   scripts/bench.sh transform zstd and gzip in the proxy: CPU-seconds per GiB up
#                              and down and the compression ratio on a tarball
#                              of src/ and the cargo registry's sources, beside
#                              one SHA-256 pass (issue 17; BENCH_CORPUS_MIB,
#                              BENCH_LEVEL; see benches/transform.rs)
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
    local packages=("${missing[@]/nginx/nginx-light}")
    packages=("${packages[@]/perf/linux-perf}")
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  fi
}

case "${1:-}" in
  webhook)
    need nginx
    exec cargo bench --features proxy --bench webhook_keeps_up
    ;;
  proxy)
    need nginx wrk
    if [[ "${BENCH_PERF_SECONDS:-0}" != 0 ]]; then need perf; fi
    exec cargo bench --features proxy --bench proxy_vs_nginx -- proxy
    ;;
  uploads)
    need nginx openssl
    exec cargo bench --features proxy --bench proxy_vs_nginx -- uploads
    ;;
  fleet)
    need nats-server
    bash scripts/setup-peers.sh
    # shellcheck source=/dev/null
    source .peers/env
    exec cargo bench --features proxy --bench fleet_outbox
    ;;
  transform)
    bash scripts/setup-peers.sh
    # shellcheck source=/dev/null
    source .peers/env
    exec cargo bench --features proxy --bench transform
    ;;
  *)
    echo "usage: scripts/bench.sh webhook|proxy|uploads|fleet|transform" >&2
    exit 2
    ;;
esac
