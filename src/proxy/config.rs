//! The proxy's settings: command-line flags, a TOML file and the original
//! Worker's environment variables, merged into one [`Config`].
//!
//! Precedence is flags > file > environment. Where a higher source replaces
//! a value a lower one also set, the merge records a note that the server
//! logs at info level once logging is up, so an environment variable never
//! loses silently.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::credentials::Secret;
use crate::resign::Upstream;

/// Default address of the S3 listener.
pub(super) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default address of the admin listener (`/healthz`, `/readyz`).
pub(super) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Default data directory of the embedded store.
pub(super) const DEFAULT_DATA_DIR: &str = "./s3tap-data";

/// Command-line flags of the `s3tap` binary.
#[derive(Debug, Default, Parser)]
#[command(
    name = "s3tap",
    version,
    about = "S3 proxy: verifies SigV4, re-signs for the upstream"
)]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Address of the S3 listener [env: S3TAP_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address of the admin listener serving /healthz and /readyz
    /// [env: S3TAP_ADMIN_LISTEN] [default: 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// PEM certificate chain: serve HTTPS instead of HTTP.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Upstream S3 endpoint [env: AWS_S3_ENDPOINT]; without one an embedded
    /// store is started.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Signing region [env: AWS_REGION] [default: derived from the endpoint].
    #[arg(long)]
    pub region: Option<String>,
    /// Data directory of the embedded store [default: ./s3tap-data].
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// Log format (filter with RUST_LOG).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Instead of running the proxy, operate a running one through its
    /// admin API.
    #[command(subcommand)]
    pub command: Option<super::cli::Command>,
}

/// How log lines are written (to stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How buckets are addressed on the upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// `host/bucket/key`.
    #[default]
    Path,
    /// `bucket.host/key`.
    Virtual,
}

/// Which key signs requests to the upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialsMode {
    /// The client's own key (it also works upstream): the Worker's behaviour.
    #[default]
    Client,
    /// One fixed upstream key for every client.
    Fixed,
    /// Each client's `upstream_*` key from `[[clients]]`.
    Mapped,
}

/// Whether hex and unsigned payloads are hashed in the proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadHashingMode {
    /// Hash and hold the last frame until the digest matches.
    #[default]
    Verify,
    /// Let the upstream check the hash it is sent.
    Defer,
}

// ---- the TOML file ------------------------------------------------------

/// The TOML file, as written. Unknown keys are errors, so a typo never
/// passes for a setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    /// `[listen]`
    #[serde(default)]
    pub listen: ListenSection,
    /// `[tls]`
    pub tls: Option<TlsSection>,
    /// `[admin]`
    #[serde(default)]
    pub admin: AdminSection,
    /// `[upstream]`
    pub upstream: Option<UpstreamSection>,
    /// `[verify]`
    #[serde(default)]
    pub verify: VerifySection,
    /// `[embedded]`
    #[serde(default)]
    pub embedded: EmbeddedSection,
    /// `[log]`
    #[serde(default)]
    pub log: LogSection,
    /// `[notify]`
    #[serde(default)]
    pub notify: NotifySection,
    /// `[limits]`
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[[clients]]`
    #[serde(default)]
    pub clients: Vec<ClientSection>,
    /// `[[rules]]`: which events go to which sinks.
    #[serde(default)]
    pub rules: Vec<crate::notify::Rule>,
    /// `[[sinks]]`: where events go.
    #[serde(default)]
    pub sinks: Vec<super::notify::SinkSection>,
}

/// `[listen]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenSection {
    /// Address of the S3 listener.
    pub address: Option<String>,
    /// Recognise `bucket.<suffix>` Host headers from clients.
    pub virtual_host_suffix: Option<String>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub drain_timeout_secs: Option<u64>,
}

/// `[tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsSection {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[admin]`
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminSection {
    /// Address of the admin listener.
    pub address: Option<String>,
    /// Bearer token of the `/admin/...` endpoints (env `S3TAP_ADMIN_TOKEN`);
    /// without one they answer 403.
    pub token: Option<String>,
}

impl fmt::Debug for AdminSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminSection")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `[upstream]`. Its `Debug` redacts the secret.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamSection {
    /// `https://s3.us-west-004.backblazeb2.com`
    pub endpoint: Option<String>,
    /// Signing region (default: derived from the endpoint's host).
    pub region: Option<String>,
    /// `"path"` or `"virtual"`.
    #[serde(default)]
    pub addressing: Addressing,
    /// `"client"`, `"fixed"` or `"mapped"`.
    pub credentials: Option<CredentialsMode>,
    /// The fixed upstream key id (`credentials = "fixed"`).
    pub access_key_id: Option<String>,
    /// The fixed upstream secret (`credentials = "fixed"`).
    pub secret_access_key: Option<String>,
    /// Extra CA (PEM) to trust for the upstream.
    pub ca_file: Option<PathBuf>,
    /// Seconds to open a connection.
    pub connect_timeout_secs: Option<u64>,
    /// Seconds to the response head.
    pub response_timeout_secs: Option<u64>,
}

impl fmt::Debug for UpstreamSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSection")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("addressing", &self.addressing)
            .field("credentials", &self.credentials)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_file", &self.ca_file)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("response_timeout_secs", &self.response_timeout_secs)
            .finish()
    }
}

/// `[verify]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifySection {
    /// Allowed clock skew, seconds (default 900).
    pub max_clock_skew_secs: Option<u64>,
    /// Largest aws-chunked chunk, bytes (default 16 MiB).
    pub max_chunk_size: Option<u64>,
    /// `"verify"` or `"defer"`.
    #[serde(default)]
    pub payload_hashing: PayloadHashingMode,
}

/// `[limits]`: what one client may cost the proxy. Every limit has a safe
/// default; a hostile client gets an S3 error or a closed connection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsSection {
    /// Largest request head (request line and headers), bytes (default 64 KiB).
    pub max_header_bytes: Option<usize>,
    /// Most headers in one request (default 100).
    pub max_headers: Option<usize>,
    /// Longest request target (path and query), bytes (default 8 KiB).
    pub max_uri_bytes: Option<usize>,
    /// Time allowed to send the request head, seconds (default 10).
    pub header_read_timeout_secs: Option<u64>,
    /// Longest pause between two pieces of a request body, seconds (default 30).
    pub body_idle_timeout_secs: Option<u64>,
    /// Most client connections served at once (default 1024); more wait.
    pub max_connections: Option<usize>,
}

/// The resolved `[limits]`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// Most headers per request.
    pub max_headers: usize,
    /// Longest request target, bytes.
    pub max_uri_bytes: usize,
    /// Time to send the request head.
    pub header_read_timeout: Duration,
    /// Longest pause inside a request body.
    pub body_idle_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

fn limits_config(l: &LimitsSection) -> Result<Limits, ConfigError> {
    let positive = |value: Option<u64>, default: u64, name: &str| -> Result<u64, ConfigError> {
        match value.unwrap_or(default) {
            0 => Err(invalid(format!("[limits] {name} must be greater than 0"))),
            v => Ok(v),
        }
    };
    let max_header_bytes = positive(
        l.max_header_bytes.map(|v| v as u64),
        64 * 1024,
        "max_header_bytes",
    )? as usize;
    if max_header_bytes < 8192 {
        return Err(invalid(format!(
            "[limits] max_header_bytes = {max_header_bytes} is below 8192, less than S3 clients need"
        )));
    }
    Ok(Limits {
        max_header_bytes,
        max_headers: positive(l.max_headers.map(|v| v as u64), 100, "max_headers")? as usize,
        max_uri_bytes: positive(l.max_uri_bytes.map(|v| v as u64), 8192, "max_uri_bytes")? as usize,
        header_read_timeout: Duration::from_secs(positive(
            l.header_read_timeout_secs,
            10,
            "header_read_timeout_secs",
        )?),
        body_idle_timeout: Duration::from_secs(positive(
            l.body_idle_timeout_secs,
            30,
            "body_idle_timeout_secs",
        )?),
        max_connections: positive(l.max_connections.map(|v| v as u64), 1024, "max_connections")?
            as usize,
    })
}

/// `[embedded]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmbeddedSection {
    /// Data directory of the embedded store.
    pub data_dir: Option<PathBuf>,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogSection {
    /// `"text"` or `"json"`.
    pub format: Option<LogFormat>,
}

pub(super) use super::notify::NotifySection;

/// One `[[clients]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientSection {
    /// The key id the client signs with.
    pub access_key_id: String,
    /// The secret the client signs with.
    pub secret_access_key: String,
    /// Who the client is (default: the key id).
    pub identity: Option<String>,
    /// Upstream key id for `credentials = "mapped"`.
    pub upstream_access_key_id: Option<String>,
    /// Upstream secret for `credentials = "mapped"`.
    pub upstream_secret_access_key: Option<String>,
    /// May configure buckets' notifications through S3's own API
    /// (`PutBucketNotificationConfiguration`, `GetBucketNotificationConfiguration`).
    #[serde(default)]
    pub manage_notifications: bool,
}

impl fmt::Debug for ClientSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSection")
            .field("access_key_id", &self.access_key_id)
            .field("identity", &self.identity)
            .field("upstream_access_key_id", &self.upstream_access_key_id)
            .field("manage_notifications", &self.manage_notifications)
            .finish_non_exhaustive()
    }
}

// ---- the merged result ----------------------------------------------------

/// Everything the server needs, merged and checked.
#[derive(Debug)]
pub struct Config {
    /// S3 listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Bearer token of the `/admin/...` endpoints (`None`: they answer 403).
    pub admin_token: Option<Secret>,
    /// HTTPS on the S3 listener.
    pub tls: Option<TlsFiles>,
    /// Log format.
    pub log_format: LogFormat,
    /// Where requests go.
    pub upstream: UpstreamConfig,
    /// Client keys (for the embedded store: at most one, from the
    /// environment; otherwise one is generated).
    pub clients: Vec<ClientKey>,
    /// Verification settings.
    pub verify: VerifyConfig,
    /// Recognise `bucket.<suffix>` Host headers.
    pub virtual_host_suffix: Option<String>,
    /// Drain time for in-flight requests on shutdown.
    pub drain_timeout: Duration,
    /// Event notifications: sinks, rules, spool.
    pub notify: super::notify::NotifySettings,
    /// What one client may cost.
    pub limits: Limits,
    /// Overrides between sources, to log at info level.
    pub notes: Vec<String>,
}

/// HTTPS certificate and key files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Where requests go.
#[derive(Debug)]
pub enum UpstreamConfig {
    /// A real S3 endpoint.
    Remote(RemoteUpstream),
    /// The embedded store on a data directory.
    Embedded {
        /// Data directory.
        data_dir: PathBuf,
    },
}

/// A real S3 endpoint.
#[derive(Debug)]
pub struct RemoteUpstream {
    /// Endpoint.
    pub endpoint: Upstream,
    /// Signing region (`None`: derived from the endpoint).
    pub region: Option<String>,
    /// Bucket addressing.
    pub addressing: Addressing,
    /// Which key signs.
    pub credentials: CredentialsMode,
    /// The fixed upstream key (`credentials = "fixed"`).
    pub fixed: Option<(String, Secret)>,
    /// Extra CA PEM to trust.
    pub ca_pem: Option<Vec<u8>>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Response-head timeout.
    pub response_timeout: Duration,
}

/// One client key.
#[derive(Clone, Debug)]
pub struct ClientKey {
    /// Key id.
    pub access_key_id: String,
    /// Secret (redacted in Debug).
    pub secret: Secret,
    /// Identity name.
    pub identity: Option<String>,
    /// Mapped upstream key.
    pub upstream: Option<(String, Secret)>,
    /// May configure bucket notifications through the S3 API.
    pub manage_notifications: bool,
}

/// Verification settings.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    /// Allowed clock skew.
    pub max_clock_skew: Duration,
    /// Largest aws-chunked chunk.
    pub max_chunk_size: u64,
    /// Payload hashing.
    pub payload_hashing: PayloadHashingMode,
}

/// A setting that keeps the proxy from starting. Each message is one line
/// naming the setting and its source, never a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown or mistyped keys.
    #[error("config file {path}, line {line}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Any other invalid setting.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// Where a value came from, for override notes and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Flag,
    File,
    Env,
}

/// Picks the highest-precedence value and notes what it replaced.
fn pick<T: PartialEq>(
    notes: &mut Vec<String>,
    setting: &str,
    flag: Option<(T, &str)>,
    file: Option<(T, &str)>,
    env: Option<(T, &str)>,
) -> Option<(T, Source)> {
    let mut set: Vec<(T, &str, Source)> = Vec::new();
    if let Some((v, name)) = flag {
        set.push((v, name, Source::Flag));
    }
    if let Some((v, name)) = file {
        set.push((v, name, Source::File));
    }
    if let Some((v, name)) = env {
        set.push((v, name, Source::Env));
    }
    let mut set = set.into_iter();
    let (winner, winner_name, source) = set.next()?;
    for (value, name, _) in set {
        let same = if value == winner { " (same value)" } else { "" };
        notes.push(format!("{setting}: {winner_name} overrides {name}{same}"));
    }
    Some((winner, source))
}

impl Config {
    /// Merges flags, the file they name (if any) and the environment read
    /// through `env`.
    pub fn load(args: &Args, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let file = match &args.config {
            Some(path) => Some((path.clone(), read_file(path)?)),
            None => None,
        };
        let file_name = file
            .as_ref()
            .map(|(p, _)| format!("config file {}", p.display()))
            .unwrap_or_default();
        let fc = file.map(|(_, c)| c).unwrap_or_default();
        let mut notes = Vec::new();

        let listen_file = format!("{file_name} [listen] address");
        let (listen, _) = pick(
            &mut notes,
            "listen address",
            args.listen.clone().map(|v| (v, "--listen")),
            fc.listen.address.clone().map(|v| (v, listen_file.as_str())),
            env("S3TAP_LISTEN").map(|v| (v, "S3TAP_LISTEN")),
        )
        .unwrap_or((DEFAULT_LISTEN.to_owned(), Source::Flag));
        let listen = parse_addr(&listen, "listen address")?;

        let admin_file = format!("{file_name} [admin] address");
        let (admin, _) = pick(
            &mut notes,
            "admin listen address",
            args.admin_listen.clone().map(|v| (v, "--admin-listen")),
            fc.admin.address.clone().map(|v| (v, admin_file.as_str())),
            env("S3TAP_ADMIN_LISTEN").map(|v| (v, "S3TAP_ADMIN_LISTEN")),
        )
        .unwrap_or((DEFAULT_ADMIN_LISTEN.to_owned(), Source::Flag));
        let admin_listen = parse_addr(&admin, "admin listen address")?;
        let admin_token = pick(
            &mut notes,
            "admin token",
            None,
            fc.admin.token.clone().map(|v| (v, "[admin] token")),
            env("S3TAP_ADMIN_TOKEN").map(|v| (v, "S3TAP_ADMIN_TOKEN")),
        )
        .map(|(v, _)| Secret::new(v));
        if admin_listen == listen && listen.port() != 0 {
            return Err(invalid(format!(
                "the admin listen address {admin_listen} must differ from the listen address"
            )));
        }

        let tls = match (&args.tls_cert, &args.tls_key, &fc.tls) {
            (Some(cert), Some(key), file_tls) => {
                if file_tls.is_some() {
                    notes.push(format!(
                        "TLS: --tls-cert/--tls-key override {file_name} [tls]"
                    ));
                }
                Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                })
            }
            (_, _, Some(t)) => Some(TlsFiles {
                cert: t.cert.clone(),
                key: t.key.clone(),
            }),
            _ => None,
        };

        let log_format = pick(
            &mut notes,
            "log format",
            args.log_format.map(|v| (v, "--log-format")),
            fc.log.format.map(|v| (v, "[log] format")),
            None,
        )
        .map(|(v, _)| v)
        .unwrap_or_default();

        // The Worker's variables: one key pair that works upstream.
        let env_key = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some((id, Secret::new(secret))),
            (Some(_), None) => {
                return Err(invalid(
                    "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is missing",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is missing",
                ))
            }
            (None, None) => None,
        };

        let up = fc.upstream.unwrap_or_default();
        let endpoint_file = format!("{file_name} [upstream] endpoint");
        let endpoint = pick(
            &mut notes,
            "upstream endpoint",
            args.endpoint.clone().map(|v| (v, "--endpoint")),
            up.endpoint.clone().map(|v| (v, endpoint_file.as_str())),
            env("AWS_S3_ENDPOINT").map(|v| (v, "AWS_S3_ENDPOINT")),
        );
        let region = pick(
            &mut notes,
            "upstream region",
            args.region.clone().map(|v| (v, "--region")),
            up.region.clone().map(|v| (v, "[upstream] region")),
            env("AWS_REGION").map(|v| (v, "AWS_REGION")),
        )
        .map(|(v, _)| v);

        let verify = verify_config(&fc.verify)?;
        let limits = limits_config(&fc.limits)?;
        let drain_timeout = Duration::from_secs(fc.listen.drain_timeout_secs.unwrap_or(30));
        let webhook_url = pick(
            &mut notes,
            "webhook URL",
            None,
            fc.notify
                .webhook_url
                .clone()
                .map(|v| (v, "[notify] webhook_url")),
            env("WEBHOOK_URL").map(|v| (v, "WEBHOOK_URL")),
        )
        .map(|(v, _)| v);
        if let Some(url) = &webhook_url {
            check_webhook_url(url)?;
        }
        let webhook_secret = pick(
            &mut notes,
            "webhook secret",
            None,
            fc.notify
                .webhook_secret
                .clone()
                .map(|v| (v, "[notify] webhook_secret")),
            env("WEBHOOK_SECRET").map(|v| (v, "WEBHOOK_SECRET")),
        )
        .map(|(v, _)| v);
        let notify_section = NotifySection {
            webhook_url,
            webhook_secret,
            ..fc.notify
        };
        let notify = super::notify::NotifySettings::resolve(notify_section, fc.sinks, fc.rules)?;

        let mut clients = Vec::new();
        for c in fc.clients {
            if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
                return Err(invalid(format!(
                    "{file_name} [[clients]]: access_key_id and secret_access_key must not be empty"
                )));
            }
            let upstream = match (c.upstream_access_key_id, c.upstream_secret_access_key) {
                (Some(id), Some(secret)) => Some((id, Secret::new(secret))),
                (None, None) => None,
                _ => {
                    return Err(invalid(format!(
                        "{file_name} [[clients]] {}: upstream_access_key_id and \
                         upstream_secret_access_key go together",
                        c.access_key_id
                    )))
                }
            };
            clients.push(ClientKey {
                access_key_id: c.access_key_id,
                secret: Secret::new(c.secret_access_key),
                identity: c.identity,
                upstream,
                manage_notifications: c.manage_notifications,
            });
        }

        let upstream = match endpoint {
            None => {
                let data_dir = args
                    .data_dir
                    .clone()
                    .or(fc.embedded.data_dir)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
                if let Some((id, secret)) = env_key {
                    add_env_client(&mut clients, &mut notes, id, secret);
                }
                UpstreamConfig::Embedded { data_dir }
            }
            Some((endpoint, source)) => {
                let endpoint = Upstream::parse(&endpoint).map_err(|e| {
                    let from = match source {
                        Source::Flag => "--endpoint",
                        Source::File => "[upstream] endpoint",
                        Source::Env => "AWS_S3_ENDPOINT",
                    };
                    invalid(format!("{from}: {e}"))
                })?;
                let mode = up.credentials.unwrap_or_default();
                let mut fixed = None;
                match mode {
                    CredentialsMode::Client => {
                        if let Some((id, secret)) = env_key {
                            add_env_client(&mut clients, &mut notes, id, secret);
                        }
                    }
                    CredentialsMode::Fixed => {
                        let file_key = match (&up.access_key_id, &up.secret_access_key) {
                            (Some(id), Some(secret)) => Some((id.clone(), Secret::new(secret.as_str()))),
                            (None, None) => None,
                            _ => {
                                return Err(invalid(format!(
                                    "{file_name} [upstream]: access_key_id and secret_access_key go together"
                                )))
                            }
                        };
                        if file_key.is_some() && env_key.is_some() {
                            notes.push(
                                "fixed upstream key: [upstream] access_key_id overrides AWS_ACCESS_KEY_ID"
                                    .to_owned(),
                            );
                        }
                        fixed = file_key.or(env_key);
                        if fixed.is_none() {
                            return Err(invalid(
                                "credentials = \"fixed\" needs an upstream key: [upstream] \
                                 access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and \
                                 AWS_SECRET_ACCESS_KEY",
                            ));
                        }
                    }
                    CredentialsMode::Mapped => {
                        if env_key.is_some() {
                            notes.push(
                                "AWS_ACCESS_KEY_ID is not used with credentials = \"mapped\"; \
                                 clients map to upstream keys in [[clients]]"
                                    .to_owned(),
                            );
                        }
                        if let Some(c) = clients.iter().find(|c| c.upstream.is_none()) {
                            return Err(invalid(format!(
                                "credentials = \"mapped\": client {} has no \
                                 upstream_access_key_id/upstream_secret_access_key",
                                c.access_key_id
                            )));
                        }
                    }
                }
                if mode != CredentialsMode::Fixed
                    && (up.access_key_id.is_some() || up.secret_access_key.is_some())
                {
                    return Err(invalid(
                        "[upstream] access_key_id/secret_access_key are only used with credentials = \"fixed\"",
                    ));
                }
                if clients.is_empty() {
                    return Err(invalid(
                        "no client keys: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add \
                         [[clients]] to the config file",
                    ));
                }
                let ca_pem = match &up.ca_file {
                    Some(path) => Some(std::fs::read(path).map_err(|e| {
                        invalid(format!(
                            "cannot read [upstream] ca_file {}: {e}",
                            path.display()
                        ))
                    })?),
                    None => None,
                };
                UpstreamConfig::Remote(RemoteUpstream {
                    endpoint,
                    region,
                    addressing: up.addressing,
                    credentials: mode,
                    fixed,
                    ca_pem,
                    connect_timeout: positive_secs(
                        up.connect_timeout_secs,
                        10,
                        "[upstream] connect_timeout_secs",
                    )?,
                    response_timeout: positive_secs(
                        up.response_timeout_secs,
                        60,
                        "[upstream] response_timeout_secs",
                    )?,
                })
            }
        };
        let mut seen = std::collections::HashSet::new();
        for c in &clients {
            if !seen.insert(c.access_key_id.as_str()) {
                return Err(invalid(format!(
                    "client key {} appears twice",
                    c.access_key_id
                )));
            }
        }

        Ok(Config {
            listen,
            admin_listen,
            admin_token,
            tls,
            log_format,
            upstream,
            clients,
            verify,
            virtual_host_suffix: fc.listen.virtual_host_suffix,
            drain_timeout,
            notify,
            limits,
            notes,
        })
    }
}

fn add_env_client(
    clients: &mut Vec<ClientKey>,
    notes: &mut Vec<String>,
    id: String,
    secret: Secret,
) {
    if clients.iter().any(|c| c.access_key_id == id) {
        notes.push(format!(
            "client key {id}: the config file's [[clients]] entry overrides AWS_SECRET_ACCESS_KEY"
        ));
        return;
    }
    clients.push(ClientKey {
        access_key_id: id,
        secret,
        identity: None,
        upstream: None,
        manage_notifications: false,
    });
}

pub(crate) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        ConfigError::Toml {
            path: path.to_owned(),
            line,
            message: e.message().replace('\n', " "),
        }
    })
}

fn parse_addr(text: &str, what: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        invalid(format!(
            "the {what} {text:?} is not an IP address and port such as 127.0.0.1:8080"
        ))
    })
}

fn positive_secs(value: Option<u64>, default: u64, what: &str) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(Duration::from_secs(default)),
        Some(0) => Err(invalid(format!("{what} must be at least 1"))),
        Some(secs) => Ok(Duration::from_secs(secs)),
    }
}

/// One week: as long as a presigned URL may live; a larger skew would
/// accept almost any replayed request.
const MAX_SKEW_SECS: u64 = 7 * 24 * 3600;

fn verify_config(v: &VerifySection) -> Result<VerifyConfig, ConfigError> {
    let skew = v.max_clock_skew_secs.unwrap_or(15 * 60);
    if skew == 0 || skew > MAX_SKEW_SECS {
        return Err(invalid(format!(
            "[verify] max_clock_skew_secs = {skew} is out of range (1 to {MAX_SKEW_SECS}; S3 allows 900)"
        )));
    }
    let chunk = v.max_chunk_size.unwrap_or(16 * 1024 * 1024);
    if chunk < 8 * 1024 {
        return Err(invalid(format!(
            "[verify] max_chunk_size = {chunk} is below 8192, the smallest chunk S3 clients send"
        )));
    }
    Ok(VerifyConfig {
        max_clock_skew: Duration::from_secs(skew),
        max_chunk_size: chunk,
        payload_hashing: v.payload_hashing,
    })
}

fn check_webhook_url(url: &str) -> Result<(), ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| invalid("WEBHOOK_URL is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err(invalid("WEBHOOK_URL must be an http:// or https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The file's sections print no secret they hold (the merged `Config` is
    /// checked through the public API in `tests/proxy_secrets.rs`).
    #[test]
    fn debug_output_of_the_file_sections_has_no_secrets() {
        let secrets = [
            "upstream-secret-d4",
            "webhook-secret-e5",
            "client-secret-a1",
            "mapped-secret-b2",
            "b2-sink-secret-f6",
            "whsec_c3RhbmRhcmQtbmV2ZXI",
            "sns-secret-h8",
            "admin-token-i9",
        ];
        let text = format!(
            r#"
[admin]
token = "{}"
[upstream]
endpoint = "http://127.0.0.1:9"
credentials = "fixed"
access_key_id = "UPKEY"
secret_access_key = "{}"
[notify]
webhook_url = "http://127.0.0.1:9/hook"
webhook_secret = "{}"
[[clients]]
access_key_id = "CLIENTKEY"
secret_access_key = "{}"
upstream_access_key_id = "MAPPEDKEY"
upstream_secret_access_key = "{}"
[[sinks]]
name = "b2"
type = "webhook"
url = "http://127.0.0.1:9/b2"
b2_secret = "{}"
[[sinks]]
name = "std"
type = "webhook"
url = "http://127.0.0.1:9/s"
standard_webhooks_secret = "{}"
[[sinks]]
name = "sns"
type = "sns"
topic_arn = "arn:aws:sns:us-east-1:1:t"
region = "us-east-1"
access_key_id = "SNSKEY"
secret_access_key = "{}"
"#,
            secrets[7],
            secrets[0],
            secrets[1],
            secrets[2],
            secrets[3],
            secrets[4],
            secrets[5],
            secrets[6],
        );
        let file: FileConfig = toml::from_str(&text).unwrap();
        let shown = [
            format!("{file:?}"),
            format!("{file:#?}"),
            format!("{:?}", file.upstream),
            format!("{:?}", file.admin),
            format!("{:?}", file.notify),
            format!("{:?}", file.clients),
            format!("{:?}", file.sinks),
        ];
        for text in &shown {
            for secret in secrets {
                assert!(
                    !text.contains(secret),
                    "{secret:?} in Debug output:\n{text}"
                );
            }
        }
        assert!(
            shown[0].contains("UPKEY"),
            "the Debug output shows the rest: {}",
            shown[0]
        );
    }

    fn load(args: Args, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&args, |name| vars.get(name).cloned())
    }

    #[test]
    fn worker_variables_alone_make_one_client_key_in_client_mode() {
        let config = load(
            Args::default(),
            &[
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", "SECRET"),
                ("AWS_S3_ENDPOINT", "https://s3.us-west-004.backblazeb2.com"),
                ("WEBHOOK_URL", "https://hooks.example/x"),
            ],
        )
        .unwrap();
        let UpstreamConfig::Remote(up) = &config.upstream else {
            panic!("expected a remote upstream");
        };
        assert_eq!(up.credentials, CredentialsMode::Client);
        assert_eq!(up.endpoint.region(), "us-west-004");
        assert_eq!(config.clients.len(), 1);
        assert_eq!(config.clients[0].access_key_id, "AKID");
        let sinks: Vec<_> = config.notify.sinks().collect();
        assert_eq!(sinks, [("webhook", Some("https://hooks.example/x"))]);
        assert_eq!(
            config.notify.rules()[0].statuses,
            crate::notify::StatusFilter::All
        );
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert!(config.notes.is_empty());
    }

    #[test]
    fn flags_override_the_environment_and_say_so() {
        let args = Args {
            listen: Some("127.0.0.1:7000".into()),
            ..Args::default()
        };
        let config = load(args, &[("S3TAP_LISTEN", "127.0.0.1:7001")]).unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(
            config.notes,
            ["listen address: --listen overrides S3TAP_LISTEN"]
        );
        assert!(matches!(config.upstream, UpstreamConfig::Embedded { .. }));
    }

    #[test]
    fn half_a_key_pair_is_an_error() {
        let error = load(Args::default(), &[("AWS_ACCESS_KEY_ID", "AKID")]).unwrap_err();
        assert!(error
            .to_string()
            .contains("AWS_SECRET_ACCESS_KEY is missing"));
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let config = load(
            Args::default(),
            &[
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
                ("AWS_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ],
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("very-secret-value"));
    }
}
