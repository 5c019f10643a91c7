//! Where the real test peers live: paths from the `S3TAP_*` environment, or
//! from the `.peers/env` file that `scripts/setup-peers.sh` writes.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SETUP_HINT: &str = "run `bash scripts/setup-peers.sh` (or the whole suite with \
     `bash scripts/test.sh`); for a local run without peers set S3TAP_SKIP_PEERS=1";

/// The peers installed by `scripts/setup-peers.sh`.
///
/// Each accessor panics, naming the setup script, when its peer is missing:
/// a test whose peer is absent fails rather than passing silently.
#[derive(Debug)]
pub struct Peers {
    vars: HashMap<&'static str, PathBuf>,
}

const VARS: &[&str] = &[
    "S3TAP_PYTHON",
    "S3TAP_AWS_CLI",
    "S3TAP_MOTO_SERVER",
    "S3TAP_NODE",
    "S3TAP_NODE_MODULES",
    "S3TAP_RCLONE",
    "S3TAP_S3CMD",
    "S3TAP_S3S_FS",
    "S3TAP_CHROMIUM",
];

impl Peers {
    /// The peers, or `None` (after a loud line on stderr) when the developer
    /// opted out with `S3TAP_SKIP_PEERS=1`. The opt-out is refused under
    /// `CI=true`.
    pub fn get() -> Option<&'static Peers> {
        static PEERS: OnceLock<Peers> = OnceLock::new();
        if std::env::var("S3TAP_SKIP_PEERS").as_deref() == Ok("1") {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("S3TAP_SKIP_PEERS=1 is for local runs only; CI must run every peer test");
            }
            let test = std::thread::current()
                .name()
                .unwrap_or("<unnamed test>")
                .to_owned();
            // Written past libtest's output capture so it shows even when the
            // test passes.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! SKIPPED {test}: S3TAP_SKIP_PEERS=1, this test's real peers were NOT exercised !!!!!!!!"
            );
            return None;
        }
        Some(PEERS.get_or_init(Peers::load))
    }

    fn load() -> Peers {
        let env_file = Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers/env");
        let from_file = std::fs::read_to_string(&env_file)
            .map(|text| parse_env_file(&text))
            .unwrap_or_default();
        let mut vars = HashMap::new();
        for &name in VARS {
            let value = std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| from_file.get(name).map(PathBuf::from));
            if let Some(value) = value {
                vars.insert(name, value);
            }
        }
        if vars.is_empty() {
            panic!(
                "no test peers configured: neither S3TAP_* variables nor {} exist; {SETUP_HINT}",
                env_file.display()
            );
        }
        Peers { vars }
    }

    fn path(&self, var: &str, what: &str) -> &Path {
        match self.vars.get(var) {
            Some(p) if p.exists() => p,
            Some(p) => panic!(
                "test peer {what} not found at {} ({var}); {SETUP_HINT}",
                p.display()
            ),
            None => panic!(
                "test peer {what} is not installed ({var} unset; S3TAP_PEERS=minimal skips it); {SETUP_HINT}"
            ),
        }
    }

    /// Python of the peers' venv (has boto3).
    pub fn python(&self) -> &Path {
        self.path("S3TAP_PYTHON", "python with boto3")
    }

    /// aws-cli v1 from the peers' venv.
    pub fn aws_cli(&self) -> &Path {
        self.path("S3TAP_AWS_CLI", "aws-cli")
    }

    /// moto's standalone server.
    pub fn moto_server(&self) -> &Path {
        self.path("S3TAP_MOTO_SERVER", "moto_server")
    }

    /// The node binary.
    pub fn node(&self) -> &Path {
        self.path("S3TAP_NODE", "node")
    }

    /// `node_modules` holding `@aws-sdk/client-s3` and `@aws-sdk/lib-storage`.
    pub fn node_modules(&self) -> &Path {
        self.path("S3TAP_NODE_MODULES", "AWS JS SDK v3 node_modules")
    }

    /// rclone (Debian's).
    pub fn rclone(&self) -> &Path {
        self.path("S3TAP_RCLONE", "rclone")
    }

    /// s3cmd (Debian's).
    pub fn s3cmd(&self) -> &Path {
        self.path("S3TAP_S3CMD", "s3cmd")
    }

    /// Chromium (Debian's), run headless as a real browser.
    pub fn chromium(&self) -> &Path {
        self.path("S3TAP_CHROMIUM", "chromium")
    }

    /// s3s-fs, an S3 server on a directory that verifies SigV4 itself.
    pub fn s3s_fs(&self) -> &Path {
        self.path("S3TAP_S3S_FS", "s3s-fs")
    }
}

/// Reads the `export NAME='value'` lines that setup-peers.sh writes.
fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|rest| rest.split_once('='))
        .map(|(name, value)| {
            let value = value.trim();
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value);
            (name.trim().to_owned(), value.to_owned())
        })
        .collect()
}
