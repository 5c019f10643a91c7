#!/usr/bin/env bash
# Builds the docs exactly as docs.rs does: nightly rustdoc, every feature,
# `--cfg docsrs` (the feature badges), warnings denied. Needs a nightly
# toolchain (`rustup toolchain install nightly` where rustup can fetch one).
# Its own target directory: nightly builds every dependency again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "docsrs.sh: no nightly toolchain installed (rustup toolchain install nightly)" >&2
  exit 2
fi
RUSTDOCFLAGS="--cfg docsrs -D warnings" exec cargo +nightly doc --no-deps --all-features \
  --target-dir target/docsrs "$@"
