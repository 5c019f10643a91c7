#!/usr/bin/env bash
# The project's one test command (CI runs it through .ci/run): installs the
# real test peers, then runs every test, doc tests included.
#
#   S3TAP_PEERS=minimal   skip installing rclone, s3cmd and s3s-fs (local runs)
#   S3TAP_SKIP_PEERS=1    tests that need a peer skip, loudly (local runs only;
#                         refused when CI=true)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

if [[ "${CI:-}" == true && "${S3TAP_SKIP_PEERS:-}" == 1 ]]; then
  echo "test.sh: S3TAP_SKIP_PEERS=1 is for local runs; CI must run every peer test" >&2
  exit 2
fi

t_all="$(now)"
timings=()

# The peers install while the tests build: pip, npm and apt mostly wait on
# the network, and the build leaves a core idle while it links, which the
# s3s-fs build fills (on a cold cache this saves about the install's time).
# The tests read the peers' paths at run time only (.peers/env), so building
# before the install is done changes nothing in what is built. The install's
# log is printed whole once it is done, not interleaved with cargo's.
t0="$(now)"
peers_log="$(mktemp)"
bash scripts/setup-peers.sh >"$peers_log" 2>&1 &
peers_pid=$!
status=0
cargo test --all-features --no-run || status=$?
timings+=("cargo build of the tests (beside setup-peers) $(elapsed "$t0") s")
peers_status=0
wait "$peers_pid" || peers_status=$?
cat "$peers_log" >&2
rm -f "$peers_log"
timings+=("setup-peers and the build, both done $(elapsed "$t0") s")
if [[ $peers_status -ne 0 ]]; then
  echo "test.sh: scripts/setup-peers.sh failed (exit $peers_status); its log is above" >&2
  exit "$peers_status"
fi

# shellcheck source=/dev/null
source .peers/env

t0="$(now)"
# Doc tests run as part of this: `cargo test` without a target filter
# includes them.
cargo test --all-features --no-fail-fast || status=$?
timings+=("cargo test $(elapsed "$t0") s")

# The benches and the fuzz targets are built by nothing else in CI: building
# them keeps them from rotting (no timing, no fuzzing here). The benches are
# built in the test profile (`--no-run`), reusing what `cargo test` built.
# The fuzz crate is its own workspace with its own Cargo.lock; stable
# `cargo check` builds it (libfuzzer-sys compiles libFuzzer with the system
# C++ compiler; only `cargo fuzz run` needs nightly).
t0="$(now)"
cargo test --all-features --benches --no-run || status=$?
(cd fuzz && cargo check --bins) || status=$?
timings+=("cargo check benches + fuzz $(elapsed "$t0") s")

# The crate's surface, checked as a user meets it (no tests run here):
# - each feature alone builds without warnings (a user of one layer compiles
#   only what it needs);
# - the docs build as docs.rs builds them (`--cfg docsrs`, every feature,
#   warnings denied), with stable's rustdoc accepting docs.rs's one
#   nightly-only attribute (RUSTC_BOOTSTRAP, for this check only): a real
#   nightly build needs its own cold build of every dependency, several
#   minutes that CI's budget does not have; `scripts/docsrs.sh` runs it where
#   a nightly toolchain is installed;
# - the package holds only what belongs in the crate.
t0="$(now)"
for features in "" notify authorize post dispatcher webhook webhook-redis upstream sink-webhook outbox-nats b2-native transform proxy; do
  cargo clippy --quiet --lib --no-default-features ${features:+--features "$features"} \
    -- -D warnings || {
    echo "test.sh: the library does not build cleanly with features [${features}]" >&2
    status=1
  }
done
RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo doc --quiet --no-deps \
  --all-features || status=$?
stray="$(cargo package --list --allow-dirty 2>/dev/null |
  grep -Ev '^(src|examples|tests|benches|scripts)/|^(README|CHANGELOG|BENCHMARKS)\.md$|^Cargo\.(toml|toml\.orig|lock)$|^\.cargo_vcs_info\.json$' || true)"
runtime="$(cargo package --list --allow-dirty 2>/dev/null | grep -E '\.redb$|(^|/)s3tap-(spool|data)/' || true)"
if [[ -n "$stray$runtime" ]]; then
  echo "test.sh: cargo package would ship files that do not belong in the crate:" >&2
  echo "$stray$runtime" >&2
  status=1
fi
timings+=("crate surface (features, docs, package) $(elapsed "$t0") s")
timings+=("total $(elapsed "$t_all") s")

echo "test.sh: timings:"
for t in "${timings[@]}"; do
  echo "  $t"
done
if [[ $status -ne 0 ]]; then
  echo "test.sh: FAILED (cargo test or a cargo check exited $status)" >&2
fi
exit "$status"
