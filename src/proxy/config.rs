//! The proxy's settings, resolved: command-line flags ([`cli`](super::cli)),
//! the TOML file ([`schema`](super::schema)) and the original Worker's
//! environment variables, merged and checked into one [`Config`] and what
//! it holds. [`Config::load`] runs one step per section or concern.
//!
//! Precedence is flags > file > environment. Where a higher source replaces
//! a value a lower one also set, the merge records a note that the server
//! logs at info level once logging is up, so an environment variable never
//! loses silently.
//!
//! The merge steps and their unit tests stay in this one file: each step
//! is short, and the file is one job, resolving settings. Client keys are
//! the exception, in [`clients`]: the clients file is read again at run
//! time, not only merged once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::credentials::{Secret, UpstreamCredentials};
use crate::notify::Rule;
use crate::resign::{Addressing, CredentialsSource, Upstream};
use crate::verify::PayloadHashing;

use super::cli::{Args, DEFAULT_ADMIN_LISTEN, DEFAULT_DATA_DIR, DEFAULT_LISTEN};
use super::error::{invalid, ConfigError};
use super::notify::NotifySettings;
use super::outbox::OutboxSettings;
use super::schema::{
    read_file, ClientSection, CredentialsSetting, EmbeddedSection, FileConfig, LimitsSection,
    LogFormat, NotifySection, SinkSection, TlsSection, UpstreamSection, VerifySection,
};

mod clients;

pub(super) use clients::check_unique;
use clients::{client_keys, load_clients_file};
pub(super) use clients::{ClientKey, ClientsFile};

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
    /// Most bytes an HTTP/1 connection reads from its socket at once.
    pub read_buffer_bytes: usize,
}

/// `[limits] read_buffer_bytes` unless set: hyper's own default. A request
/// body arrives in reads of up to this size, and a connection that streams
/// one fast holds about three buffers of it (the one being read, the piece
/// the verifier holds back, the piece being written upstream). Larger reads
/// take fewer system calls and wake-ups per GiB: 2 MiB cost 11–21 % less
/// CPU per GiB in the modes that hash, for 6–8 MiB more per uploading
/// connection (BENCHMARKS.md, "Goal 3: hashing beside socket I/O"). At
/// 64 KiB a 1 GiB upload took 1.7 times nginx's CPU for the hop alone.
const DEFAULT_READ_BUFFER_BYTES: usize = 400 * 1024;

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
    let read_buffer_bytes = positive(
        l.read_buffer_bytes.map(|v| v as u64),
        DEFAULT_READ_BUFFER_BYTES as u64,
        "read_buffer_bytes",
    )? as usize;
    if read_buffer_bytes < max_header_bytes {
        return Err(invalid(format!(
            "[limits] read_buffer_bytes = {read_buffer_bytes} is below max_header_bytes = \
             {max_header_bytes}: a request head must fit in one read"
        )));
    }
    Ok(Limits {
        max_header_bytes,
        read_buffer_bytes,
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
    /// environment; otherwise one is generated), including those read
    /// from `clients_file` at start.
    pub clients: Vec<ClientKey>,
    /// `clients_file`: where more clients come from, reloaded while running.
    pub clients_file: Option<ClientsFile>,
    /// Verification settings.
    pub verify: VerifySettings,
    /// Recognise `bucket.<suffix>` Host headers.
    pub virtual_host_suffix: Option<String>,
    /// Drain time for in-flight requests on shutdown.
    pub drain_timeout: Duration,
    /// `[listen] workers`: threads serving the S3 listener, each a
    /// single-threaded runtime with its own upstream connections.
    pub workers: usize,
    /// `[listen] shared_threads`: threads of the runtime the binary runs
    /// the admin listener, the dispatcher, the sinks and the outbox on
    /// (default 1: the S3 workers already take a thread per core).
    pub shared_threads: usize,
    /// Event notifications: sinks, rules, spool.
    pub notify: NotifySettings,
    /// What one client may cost.
    pub limits: Limits,
    /// `[outbox]`: fleet mode (events committed to NATS JetStream).
    pub outbox: Option<OutboxSettings>,
    /// `[b2_native]`: the B2 native API proxy beside the S3 one.
    pub b2_native: Option<B2NativeSettings>,
    /// `[[transforms]]`: uploads compressed on the way up, in order (the
    /// first rule that matches decides).
    pub transforms: Vec<crate::transform::TransformRule>,
    /// Overrides between sources, to log at info level.
    pub notes: Vec<String>,
}

impl Config {
    /// The upstream's signing region, as events and sinks name it.
    pub fn region(&self) -> String {
        match &self.upstream {
            UpstreamConfig::Remote(remote) => remote
                .region
                .clone()
                .unwrap_or_else(|| remote.endpoint.region()),
            UpstreamConfig::Embedded { .. } => "us-east-1".to_owned(),
        }
    }
}

/// `[b2_native]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct B2NativeSettings {
    /// Where `b2_authorize_account` goes.
    pub api_url: String,
    /// The proxy's URL as clients reach it (`None`: the request's `Host`).
    pub public_url: Option<String>,
    /// Upstream download URL for downloads without a token.
    pub download_url: Option<String>,
    /// Bound of the token map.
    pub max_tokens: usize,
    /// Bound of the upload URL map.
    pub max_upload_urls: usize,
}

fn b2_native_settings(
    section: Option<super::schema::B2NativeSection>,
) -> Result<Option<B2NativeSettings>, ConfigError> {
    let Some(section) = section else {
        return Ok(None);
    };
    let url = |key: &str, value: &str| -> Result<String, ConfigError> {
        let uri: http::Uri = value
            .parse()
            .map_err(|_| invalid(format!("[b2_native] {key} = {value:?} is not a URL")))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http" | "https"), Some(_)) => Ok(value.trim_end_matches('/').to_owned()),
            _ => Err(invalid(format!(
                "[b2_native] {key} = {value:?} must be an http:// or https:// URL with a host"
            ))),
        }
    };
    let bound = |key: &str, value: Option<usize>| -> Result<usize, ConfigError> {
        match value {
            None => Ok(crate::b2native::DEFAULT_MAX_ENTRIES),
            Some(0) => Err(invalid(format!("[b2_native] {key} must be at least 1"))),
            Some(n) => Ok(n),
        }
    };
    Ok(Some(B2NativeSettings {
        api_url: url("api_url", &section.api_url)?,
        public_url: section
            .public_url
            .as_deref()
            .map(|v| url("public_url", v))
            .transpose()?,
        download_url: section
            .download_url
            .as_deref()
            .map(|v| url("download_url", v))
            .transpose()?,
        max_tokens: bound("max_tokens", section.max_tokens)?,
        max_upload_urls: bound("max_upload_urls", section.max_upload_urls)?,
    }))
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

/// A real S3 endpoint. Addressing and credentials are the re-signer's own
/// types, so the settings hand them to [`ResignLayer`](crate::resign::ResignLayer)
/// as they are.
#[derive(Debug)]
pub struct RemoteUpstream {
    /// Endpoint.
    pub endpoint: Upstream,
    /// Signing region (`None`: derived from the endpoint).
    pub region: Option<String>,
    /// Bucket addressing.
    pub(crate) addressing: Addressing,
    /// Which key signs, with the fixed key for `credentials = "fixed"`.
    pub(crate) credentials: CredentialsSource,
    /// Extra CA PEM to trust.
    pub ca_pem: Option<Vec<u8>>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Response-head timeout.
    pub response_timeout: Duration,
}

/// Verification settings.
#[derive(Clone, Debug)]
pub struct VerifySettings {
    /// Allowed clock skew.
    pub max_clock_skew: Duration,
    /// Largest aws-chunked chunk.
    pub max_chunk_size: u64,
    /// Payload hashing.
    pub payload_hashing: PayloadHashing,
}

/// Where a value came from, for override notes and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Flag,
    File,
    Env,
}

/// One merge in progress: the environment, the file's name for messages,
/// and the notes on what overrode what.
struct Merge<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    /// `config file <path>`, or empty without one.
    file_name: String,
    notes: Vec<String>,
}

impl Merge<'_> {
    /// An environment variable; set but empty counts as unset.
    fn env(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    /// An environment variable with its name, as `pick` takes it.
    fn env_named<'n>(&self, name: &'n str) -> Option<(String, &'n str)> {
        self.env(name).map(|v| (v, name))
    }

    /// Picks the highest-precedence value and notes what it replaced.
    fn pick<T: PartialEq>(
        &mut self,
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
            self.notes
                .push(format!("{setting}: {winner_name} overrides {name}{same}"));
        }
        Some((winner, source))
    }

    /// `--listen`, `--admin-listen`, `[admin] token` and their variables.
    fn listeners(
        &mut self,
        args: &Args,
        fc: &FileConfig,
    ) -> Result<(SocketAddr, SocketAddr, Option<Secret>), ConfigError> {
        let listen_file = format!("{} [listen] address", self.file_name);
        let listen_env = self.env_named("S3TAP_LISTEN");
        let (listen, _) = self
            .pick(
                "listen address",
                args.listen.clone().map(|v| (v, "--listen")),
                fc.listen.address.clone().map(|v| (v, listen_file.as_str())),
                listen_env,
            )
            .unwrap_or((DEFAULT_LISTEN.to_owned(), Source::Flag));
        let listen = parse_addr(&listen, "listen address")?;

        let admin_file = format!("{} [admin] address", self.file_name);
        let admin_env = self.env_named("S3TAP_ADMIN_LISTEN");
        let (admin, _) = self
            .pick(
                "admin listen address",
                args.admin_listen.clone().map(|v| (v, "--admin-listen")),
                fc.admin.address.clone().map(|v| (v, admin_file.as_str())),
                admin_env,
            )
            .unwrap_or((DEFAULT_ADMIN_LISTEN.to_owned(), Source::Flag));
        let admin_listen = parse_addr(&admin, "admin listen address")?;
        let token_env = self.env_named("S3TAP_ADMIN_TOKEN");
        let admin_token = self
            .pick(
                "admin token",
                None,
                fc.admin.token.clone().map(|v| (v, "[admin] token")),
                token_env,
            )
            .map(|(v, _)| Secret::new(v));
        if admin_listen == listen && listen.port() != 0 {
            return Err(invalid(format!(
                "the admin listen address {admin_listen} must differ from the listen address"
            )));
        }
        Ok((listen, admin_listen, admin_token))
    }

    /// `--tls-cert`/`--tls-key`, else `[tls]`.
    fn tls(&mut self, args: &Args, file_tls: Option<&TlsSection>) -> Option<TlsFiles> {
        match (&args.tls_cert, &args.tls_key, file_tls) {
            (Some(cert), Some(key), file_tls) => {
                if file_tls.is_some() {
                    self.notes.push(format!(
                        "TLS: --tls-cert/--tls-key override {} [tls]",
                        self.file_name
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
        }
    }

    /// The Worker's variables: one key pair that works upstream.
    fn env_key(&self) -> Result<Option<(String, Secret)>, ConfigError> {
        match (
            self.env("AWS_ACCESS_KEY_ID"),
            self.env("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Ok(Some((id, Secret::new(secret)))),
            (Some(_), None) => Err(invalid(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is missing",
            )),
            (None, Some(_)) => Err(invalid(
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is missing",
            )),
            (None, None) => Ok(None),
        }
    }

    /// `[notify]` with the Worker's `WEBHOOK_URL`/`WEBHOOK_SECRET` merged in,
    /// then `[[sinks]]` and `[[rules]]`.
    fn notify(
        &mut self,
        section: NotifySection,
        sinks: Vec<SinkSection>,
        rules: Vec<Rule>,
    ) -> Result<NotifySettings, ConfigError> {
        let url_env = self.env_named("WEBHOOK_URL");
        let webhook_url = self
            .pick(
                "webhook URL",
                None,
                section
                    .webhook_url
                    .clone()
                    .map(|v| (v, "[notify] webhook_url")),
                url_env,
            )
            .map(|(v, _)| v);
        if let Some(url) = &webhook_url {
            check_webhook_url(url)?;
        }
        let secret_env = self.env_named("WEBHOOK_SECRET");
        let webhook_secret = self
            .pick(
                "webhook secret",
                None,
                section
                    .webhook_secret
                    .clone()
                    .map(|v| (v, "[notify] webhook_secret")),
                secret_env,
            )
            .map(|(v, _)| v);
        let section = NotifySection {
            webhook_url,
            webhook_secret,
            ..section
        };
        NotifySettings::resolve(section, sinks, rules)
    }

    /// The `[[clients]]` entries, checked.
    fn clients(&self, sections: Vec<ClientSection>) -> Result<Vec<ClientKey>, ConfigError> {
        client_keys(&self.file_name, sections)
    }

    /// `--endpoint` and `--region`, `[upstream]` and the Worker's variables.
    fn endpoint_and_region(
        &mut self,
        args: &Args,
        up: &UpstreamSection,
    ) -> (Option<(String, Source)>, Option<String>) {
        let endpoint_file = format!("{} [upstream] endpoint", self.file_name);
        let endpoint_env = self.env_named("AWS_S3_ENDPOINT");
        let endpoint = self.pick(
            "upstream endpoint",
            args.endpoint.clone().map(|v| (v, "--endpoint")),
            up.endpoint.clone().map(|v| (v, endpoint_file.as_str())),
            endpoint_env,
        );
        let region_env = self.env_named("AWS_REGION");
        let region = self
            .pick(
                "upstream region",
                args.region.clone().map(|v| (v, "--region")),
                up.region.clone().map(|v| (v, "[upstream] region")),
                region_env,
            )
            .map(|(v, _)| v);
        (endpoint, region)
    }

    /// No endpoint: the embedded store in its data directory, with the
    /// Worker's key (if set) as its client.
    fn embedded(
        &mut self,
        args: &Args,
        section: EmbeddedSection,
        env_key: Option<(String, Secret)>,
        clients: &mut Vec<ClientKey>,
    ) -> UpstreamConfig {
        let data_dir = args
            .data_dir
            .clone()
            .or(section.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if let Some((id, secret)) = env_key {
            self.add_env_client(clients, id, secret);
        }
        UpstreamConfig::Embedded { data_dir }
    }

    /// A real upstream: its endpoint, TLS trust and timeouts, and which key
    /// signs for it (adding the Worker's key as a client where that is what
    /// it means).
    fn remote_upstream(
        &mut self,
        (endpoint, source): (String, Source),
        region: Option<String>,
        up: &UpstreamSection,
        env_key: Option<(String, Secret)>,
        clients: &mut Vec<ClientKey>,
    ) -> Result<RemoteUpstream, ConfigError> {
        let endpoint = Upstream::parse(&endpoint).map_err(|e| {
            let from = match source {
                Source::Flag => "--endpoint",
                Source::File => "[upstream] endpoint",
                Source::Env => "AWS_S3_ENDPOINT",
            };
            invalid(format!("{from}: {e}"))
        })?;
        let mode = up.credentials.unwrap_or_default();
        let credentials = self.signing_key(mode, up, env_key, clients)?;
        if mode != CredentialsSetting::Fixed
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
        Ok(RemoteUpstream {
            endpoint,
            region,
            addressing: up.addressing,
            credentials,
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

    /// `[upstream] credentials`: the fixed key for `"fixed"`, the Worker's
    /// key as a client for `"client"`, every client mapped for `"mapped"`.
    fn signing_key(
        &mut self,
        mode: CredentialsSetting,
        up: &UpstreamSection,
        env_key: Option<(String, Secret)>,
        clients: &mut Vec<ClientKey>,
    ) -> Result<CredentialsSource, ConfigError> {
        match mode {
            CredentialsSetting::Client => {
                if let Some((id, secret)) = env_key {
                    self.add_env_client(clients, id, secret);
                }
                Ok(CredentialsSource::Client)
            }
            CredentialsSetting::Fixed => {
                let file_key = match (&up.access_key_id, &up.secret_access_key) {
                    (Some(id), Some(secret)) => Some((id.clone(), Secret::new(secret.as_str()))),
                    (None, None) => None,
                    _ => {
                        return Err(invalid(format!(
                            "{} [upstream]: access_key_id and secret_access_key go together",
                            self.file_name
                        )))
                    }
                };
                if file_key.is_some() && env_key.is_some() {
                    self.notes.push(
                        "fixed upstream key: [upstream] access_key_id overrides AWS_ACCESS_KEY_ID"
                            .to_owned(),
                    );
                }
                match file_key.or(env_key) {
                    Some((id, secret)) => Ok(CredentialsSource::Fixed(UpstreamCredentials::new(
                        id, secret,
                    ))),
                    None => Err(invalid(
                        "credentials = \"fixed\" needs an upstream key: [upstream] \
                         access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY",
                    )),
                }
            }
            CredentialsSetting::Mapped => {
                if env_key.is_some() {
                    self.notes.push(
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
                Ok(CredentialsSource::Mapped)
            }
        }
    }

    /// The Worker's key as one more client, unless `[[clients]]` has it.
    fn add_env_client(&mut self, clients: &mut Vec<ClientKey>, id: String, secret: Secret) {
        if clients.iter().any(|c| c.access_key_id == id) {
            self.notes.push(format!(
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
            policy: None,
        });
    }
}

impl Config {
    /// Merges flags, the file they name (if any) and the environment read
    /// through `env`.
    pub fn load(args: &Args, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => Some((path.clone(), read_file(path)?)),
            None => None,
        };
        let mut merge = Merge {
            env: &env,
            file_name: file
                .as_ref()
                .map(|(p, _)| format!("config file {}", p.display()))
                .unwrap_or_default(),
            notes: Vec::new(),
        };
        let fc = file.map(|(_, c)| c).unwrap_or_default();

        let (listen, admin_listen, admin_token) = merge.listeners(args, &fc)?;
        let tls = merge.tls(args, fc.tls.as_ref());
        let log_format = merge
            .pick(
                "log format",
                args.log_format.map(|v| (v, "--log-format")),
                fc.log.format.map(|v| (v, "[log] format")),
                None,
            )
            .map(|(v, _)| v)
            .unwrap_or_default();
        let env_key = merge.env_key()?;

        let up = fc.upstream.unwrap_or_default();
        let (endpoint, region) = merge.endpoint_and_region(args, &up);

        let verify = verify_settings(&fc.verify)?;
        let limits = limits_config(&fc.limits)?;
        let transforms = transform_rules(&fc.transforms)?;
        let drain_timeout = Duration::from_secs(fc.listen.drain_timeout_secs.unwrap_or(30));
        let workers = match fc.listen.workers {
            Some(0) => return Err(invalid("[listen] workers must be at least 1")),
            Some(workers) => workers,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let shared_threads = match fc.listen.shared_threads {
            Some(0) => return Err(invalid("[listen] shared_threads must be at least 1")),
            Some(threads) => threads,
            None => DEFAULT_SHARED_THREADS,
        };
        let notify = merge.notify(fc.notify, fc.sinks, fc.rules)?;
        let outbox = match fc.outbox {
            Some(section) => Some(OutboxSettings::resolve(section, notify.sink_names())?),
            None => None,
        };

        let mut clients = merge.clients(fc.clients)?;
        let clients_file = match fc.clients_file {
            Some(path) => {
                if endpoint.is_none() {
                    return Err(invalid(
                        "clients_file needs an upstream endpoint: the embedded store has one client",
                    ));
                }
                let from_file = load_clients_file(&path)?;
                let ids = from_file.iter().map(|c| c.access_key_id.clone()).collect();
                clients.extend(from_file);
                Some(ClientsFile {
                    path,
                    from_file: ids,
                })
            }
            None => None,
        };
        let upstream = match endpoint {
            None => merge.embedded(args, fc.embedded, env_key, &mut clients),
            Some(endpoint) => UpstreamConfig::Remote(merge.remote_upstream(
                endpoint,
                region,
                &up,
                env_key,
                &mut clients,
            )?),
        };
        check_unique(&clients)?;

        Ok(Config {
            listen,
            admin_listen,
            admin_token,
            tls,
            log_format,
            upstream,
            clients,
            clients_file,
            verify,
            virtual_host_suffix: fc.listen.virtual_host_suffix,
            drain_timeout,
            workers,
            shared_threads,
            notify,
            limits,
            outbox,
            b2_native: b2_native_settings(fc.b2_native)?,
            transforms,
            notes: merge.notes,
        })
    }
}

/// `[[transforms]]`, checked: a known codec at a level it takes.
fn transform_rules(
    sections: &[super::schema::TransformSection],
) -> Result<Vec<crate::transform::TransformRule>, ConfigError> {
    use crate::transform::{Gzip, TransformRule, Zstd};
    sections
        .iter()
        .enumerate()
        .map(|(i, section)| {
            let n = i + 1;
            let level = |default: i32, range: std::ops::RangeInclusive<i32>| {
                let level = section.level.unwrap_or(default);
                if range.contains(&level) {
                    Ok(level)
                } else {
                    Err(invalid(format!(
                        "[[transforms]] #{n}: level = {level} is outside {codec}'s {start}..={end}",
                        codec = section.codec,
                        start = range.start(),
                        end = range.end(),
                    )))
                }
            };
            let rule = match section.codec.as_str() {
                Zstd::NAME => TransformRule::new(Zstd::new(level(3, 1..=19)?)),
                Gzip::NAME => {
                    let level = level(6, 1..=9)?;
                    TransformRule::new(Gzip::new(level.unsigned_abs()))
                }
                other => {
                    return Err(invalid(format!(
                        "[[transforms]] #{n}: unknown codec {other:?} (known: \"zstd\", \"gzip\")"
                    )))
                }
            };
            Ok(rule
                .buckets(section.buckets.iter().cloned())
                .prefix(section.prefix.clone()))
        })
        .collect()
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

/// Threads of the binary's shared runtime unless `[listen] shared_threads`
/// says otherwise. One: the S3 workers already take a thread per core, and
/// on more threads the dispatcher's and the sinks' tasks wake each other
/// across threads for every event (a futex and an interrupt each); with one
/// thread a small signed GET cost 5–7 % less CPU and the proxy served
/// 5–8 % more of them (BENCHMARKS.md, "one thread for the shared
/// runtime"). Raise it when sinks need more than a core to format and
/// send.
pub(super) const DEFAULT_SHARED_THREADS: usize = 1;

/// One week: as long as a presigned URL may live; a larger skew would
/// accept almost any replayed request.
const MAX_SKEW_SECS: u64 = 7 * 24 * 3600;

fn verify_settings(v: &VerifySection) -> Result<VerifySettings, ConfigError> {
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
    Ok(VerifySettings {
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
        assert!(matches!(up.credentials, CredentialsSource::Client));
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
