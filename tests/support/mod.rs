#![allow(unused_imports)]
//! Shared harness for the integration tests: where the real peers are, a test
//! HTTP(S) server, a tiny S3 object sink, and runners for real S3 clients.
//!
//! Each integration test file pulls it in with `mod support;`. Not every file
//! uses every helper, hence the `dead_code` allowance.
#![allow(dead_code)]

#[cfg(feature = "proxy")]
pub mod binary;
pub mod clients;
#[cfg(feature = "outbox-nats")]
pub mod nats_cluster;
pub mod peers;
#[cfg(feature = "upstream")]
pub mod proxy;
pub mod server;
pub mod store;
pub mod upstreams;

pub use clients::{aws_cli_cp, boto3_put, js_sdk_stream_put, ClientOutput, Creds};
pub use peers::Peers;
pub use server::TestServer;
pub use store::{ObjectStore, RecordedRequest, StoreHandle};

use std::io::Write;
use std::path::{Path, PathBuf};

/// The first ```` ```toml ```` block of the top-level README for which
/// `wanted` holds: the configuration examples tests load as written.
pub fn readme_toml_example(wanted: impl Fn(&str) -> bool) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|block| wanted(block))
        .expect("a TOML example in the README")
        .to_owned()
}

/// Deterministic pseudo-random bytes (splitmix64): incompressible enough that
/// no client or layer can shortcut them, reproducible from the seed printed by
/// the test when it fails.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `len` pseudo-random bytes to a file in `dir` and returns its path
/// and content.
pub fn random_file(dir: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let data = random_bytes(len, seed);
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).expect("create test payload file");
    f.write_all(&data).expect("write test payload file");
    (path, data)
}

/// A seed that differs between runs, printed so a failure can be replayed.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seed = nanos ^ u64::from(std::process::id()).rotate_left(32);
    eprintln!("payload seed: {seed:#x}");
    seed
}
