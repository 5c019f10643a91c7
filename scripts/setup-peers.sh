#!/usr/bin/env bash
# Installs the real S3 clients and servers the integration tests talk to, into
# .peers/ (git-ignored), and writes .peers/env for the tests to source.
#
# Idempotent: each peer has a marker recording the pinned version it was
# installed at; a second run with nothing to do takes well under a second.
#
#   S3TAP_PEERS=minimal   only the Python and node peers (skips apt's rclone,
#                         s3cmd and chromium and the ~2 min build of s3s-fs)
#
# Bump a pin here (or in scripts/node/package-lock.json) and the next run
# reinstalls that peer.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/.peers"
MODE="${S3TAP_PEERS:-full}"

# Python peers: pinned to the versions current when checked with
# `pip index versions` (boto3 and awscli must agree on one botocore).
# b2sdk and its CLI: the B2 native API tests' client, and b2sdk's own API
# simulator as their upstream (tests/clients/b2_simulator_server.py).
PY_PINS=(boto3==1.44.8 botocore==1.44.8 awscli==1.46.3 'moto[server]==5.2.5' b2sdk==2.13.2 b2==5.0.2)
# s3s-fs 0.15+ needs rustc 1.96; CI has 1.95.
S3S_FS_VERSION=0.14.1

case "$MODE" in
  full | minimal) ;;
  *)
    echo "setup-peers: S3TAP_PEERS must be 'full' or 'minimal', not '$MODE'" >&2
    exit 2
    ;;
esac

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "setup-peers: $*" >&2; }

# step NAME FUNCTION: runs FUNCTION and prints how long it took.
step() {
  local name="$1" t0
  shift
  t0="$(now)"
  "$@"
  log "$name: done in $(elapsed "$t0") s"
}

for tool in python3 node npm cargo; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "$tool is required but not on PATH"
    exit 1
  fi
done
mkdir -p "$PEERS"

python_peers() {
  local venv="$PEERS/venv" marker want
  marker="$venv/.s3tap-pins"
  want="${PY_PINS[*]}"
  if [[ -x "$venv/bin/python" && -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    log "python: up to date ($want)"
    return
  fi
  log "python: installing $want"
  rm -rf "$venv"
  if ! python3 -m venv "$venv"; then
    # Debian's python3 ships venv's ensurepip separately.
    log "python: venv failed; installing Debian's python3-venv"
    rm -rf "$venv"
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --disable-pip-version-check --quiet "${PY_PINS[@]}"
  printf '%s' "$want" >"$marker"
}

node_peers() {
  local dir="$PEERS/node" src="$ROOT/scripts/node" marker want
  marker="$dir/.s3tap-lock-sha256"
  want="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)"
  if [[ -d "$dir/node_modules/@aws-sdk/client-s3" && -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    log "node: up to date (lock $want)"
    return
  fi
  log "node: npm ci from scripts/node/package-lock.json"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
  printf '%s' "$want" >"$marker"
}

apt_install() {
  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

apt_peers() {
  local missing=()
  command -v rclone >/dev/null 2>&1 || missing+=(rclone)
  command -v s3cmd >/dev/null 2>&1 || missing+=(s3cmd)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # tests/transform_proxy: decompresses what s3s-fs stored with the zstd CLI.
  command -v zstd >/dev/null 2>&1 || missing+=(zstd)
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "apt: rclone, s3cmd, chromium and zstd already present"
    return
  fi
  log "apt: installing ${missing[*]}"
  apt_install "${missing[@]}"
}

s3s_fs_peer() {
  local root="$PEERS/cargo"
  if [[ -x "$root/bin/s3s-fs" ]] && grep -q "^\"s3s-fs $S3S_FS_VERSION " "$root/.crates.toml" 2>/dev/null; then
    log "s3s-fs: $S3S_FS_VERSION already installed"
    return
  fi
  log "s3s-fs: cargo install s3s-fs $S3S_FS_VERSION (about 2-3 minutes)"
  cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked \
    --root "$root" --quiet
}

write_env() {
  local env="$PEERS/env" tmp
  tmp="$(mktemp "$PEERS/env.XXXXXX")"
  {
    echo "# Written by scripts/setup-peers.sh; source it to point the tests at the peers."
    echo "export S3TAP_PYTHON='$PEERS/venv/bin/python'"
    echo "export S3TAP_AWS_CLI='$PEERS/venv/bin/aws'"
    echo "export S3TAP_MOTO_SERVER='$PEERS/venv/bin/moto_server'"
    echo "export S3TAP_NODE='$(command -v node)'"
    echo "export S3TAP_NODE_MODULES='$PEERS/node/node_modules'"
    if [[ "$MODE" == full ]]; then
      echo "export S3TAP_RCLONE='$(command -v rclone)'"
      echo "export S3TAP_S3CMD='$(command -v s3cmd)'"
      echo "export S3TAP_CHROMIUM='$(command -v chromium)'"
      echo "export S3TAP_S3S_FS='$PEERS/cargo/bin/s3s-fs'"
    else
      echo "# S3TAP_PEERS=minimal: rclone, s3cmd, chromium and s3s-fs were not installed."
    fi
  } >"$tmp"
  mv "$tmp" "$env"
}

t_all="$(now)"
step python python_peers
step node node_peers
if [[ "$MODE" == full ]]; then
  step apt apt_peers
  step s3s-fs s3s_fs_peer
else
  log "S3TAP_PEERS=minimal: skipping rclone, s3cmd and s3s-fs"
fi
write_env
log "all peers ready in $(elapsed "$t_all") s; source $PEERS/env"
