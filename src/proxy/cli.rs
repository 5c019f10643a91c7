//! The `s3tap` command line: the proxy's flags ([`Args`]) and the
//! operator's subcommands (`s3tap dead-letters ...`, `s3tap sinks enable`),
//! clients of a running proxy's admin API (see the admin endpoints in the
//! README), printing a table or, with `--json`, the API's own JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::schema::LogFormat;

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
    pub command: Option<Command>,
}

/// Exit code of a subcommand that failed (bad flags exit with clap's 2).
pub(super) const EXIT_FAILED: u8 = 1;

/// A subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List, inspect, redrive or purge the events a sink refused or that
    /// were given up on.
    #[command(subcommand)]
    DeadLetters(DeadLetters),
    /// Act on the sinks of a running proxy.
    #[command(subcommand)]
    Sinks(Sinks),
    /// Run the delivery role of a fleet (no S3 listener): consume the
    /// `[outbox]` stream or topic of --config and deliver to its `[[sinks]]` until
    /// SIGTERM/SIGINT. Any number of deliverers share the work.
    Deliver,
    /// Deliver again what the `[outbox]` stream or topic of --config still retains
    /// since a time, with the events' own ids.
    Replay {
        /// From this time: RFC 3339 (2026-12-06T10:00:00Z) or an age
        /// (90s, 15m, 2h, 1d ago).
        #[arg(long, value_name = "TIME")]
        since: String,
        /// Only events this rule routed.
        #[arg(long)]
        rule: Option<String>,
        /// Only to this sink.
        #[arg(long)]
        sink: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `s3tap dead-letters ...`
// The flattened `select`/`remote` fields are documented by their types.
#[allow(missing_docs)]
#[derive(Debug, clap::Subcommand)]
pub enum DeadLetters {
    /// List dead letters.
    List {
        #[command(flatten)]
        select: Select,
        /// At most this many (1 to 10000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one dead letter: reason, attempts, sink, times and the event.
    Show {
        /// The event id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Deliver dead letters again (all of them unless selected).
    Redrive {
        #[command(flatten)]
        select: Select,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete dead letters (a selector or --all is required).
    Purge {
        #[command(flatten)]
        select: Select,
        /// Purge every dead letter.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `s3tap sinks ...`
#[allow(missing_docs)]
#[derive(Debug, clap::Subcommand)]
pub enum Sinks {
    /// Enable a sink that a 410 Gone disabled, without a restart; what
    /// waited in the spool for it is delivered.
    Enable {
        /// The sink's name in `[[sinks]]`.
        name: String,
        /// Also redrive the sink's dead letters.
        #[arg(long)]
        redrive: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Which dead letters.
#[derive(Debug, Default, clap::Args)]
pub struct Select {
    /// Only this sink's.
    #[arg(long)]
    pub sink: Option<String>,
    /// Only the event with this id.
    #[arg(long)]
    pub id: Option<String>,
    /// Only those dead-lettered at least this long ago (90, 90s, 15m, 2h, 1d).
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Only those dead-lettered less than this long ago.
    #[arg(long, value_name = "AGE")]
    pub newer_than: Option<String>,
}

/// Where the running proxy is.
#[derive(Debug, Default, clap::Args)]
pub struct Remote {
    /// The proxy's admin address [default: `[admin] address` of --config,
    /// else http://127.0.0.1:9090].
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// The admin token [default: S3TAP_ADMIN_TOKEN, else `[admin] token` of
    /// --config]. Prefer the environment: flags show in process lists.
    #[arg(long)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `command` against the proxy; `args` supplies `--config`.
pub(super) fn run(command: &Command, args: &Args) -> ExitCode {
    if matches!(command, Command::Deliver | Command::Replay { .. }) {
        return run_fleet_role(command, args);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start: {error}")),
    };
    match runtime.block_on(execute(command, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("s3tap: {message}");
    ExitCode::from(EXIT_FAILED)
}

/// `s3tap deliver` and `s3tap replay`: they read the whole configuration
/// (sinks, `[outbox]`) and log as the proxy does.
fn run_fleet_role(command: &Command, args: &Args) -> ExitCode {
    let config = match super::Config::load(args, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("s3tap: {error}");
            return ExitCode::from(super::EXIT_BAD_SETTINGS);
        }
    };
    super::init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start: {error}")),
    };
    let result = runtime.block_on(async {
        match command {
            Command::Replay {
                since,
                rule,
                sink,
                json,
            } => {
                let since = parse_since(since)?;
                let report =
                    super::outbox::run_replay(config, since, rule.clone(), sink.clone()).await?;
                let answer = serde_json::json!({
                    "selected": report.selected,
                    "delivered": report.delivered,
                    "failed": report.failed,
                    "unknown_sink": report.unknown_sink,
                });
                if *json {
                    return print_json(&answer);
                }
                println!("selected: {}", report.selected);
                for (sink, n) in &report.delivered {
                    println!("  delivered to {sink}: {n}");
                }
                for (sink, n) in &report.failed {
                    println!("  failed for {sink}: {n}");
                }
                if report.unknown_sink > 0 {
                    println!("  for sinks not in --config: {}", report.unknown_sink);
                }
                if report.failed.values().any(|n| *n > 0) {
                    return Err("some events could not be delivered".into());
                }
                Ok(())
            }
            _ => super::outbox::run_deliver(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

/// `--since`: an RFC 3339 time, or an age before now.
fn parse_since(text: &str) -> Result<std::time::SystemTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        let nanos = at.unix_timestamp_nanos();
        if nanos < 0 {
            return Err(format!("--since {text}: before 1970"));
        }
        return Ok(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos as u64));
    }
    match super::admin::parse_age(text) {
        Some(age) => Ok(std::time::SystemTime::now() - age),
        None => Err(format!(
            "--since {text:?}: expected an RFC 3339 time (2026-12-06T10:00:00Z) or an age (90s, 15m, 2h, 1d)"
        )),
    }
}

async fn execute(command: &Command, args: &Args) -> Result<(), String> {
    match command {
        Command::DeadLetters(DeadLetters::List {
            select,
            limit,
            remote,
        }) => {
            let mut query = select.query();
            query.push(("limit", limit.to_string()));
            let answer = call(args, remote, Method::GET, "/admin/dead-letters", &query).await?;
            if remote.json {
                return print_json(&answer);
            }
            let letters = answer["dead_letters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            println!(
                "{:<36}  {:<16}  {:>8}  {:>9}  {:<32}  REASON",
                "ID", "SINK", "ATTEMPTS", "DEAD FOR", "OBJECT"
            );
            for letter in &letters {
                let object = format!(
                    "{}/{}",
                    letter["bucket"].as_str().unwrap_or("-"),
                    letter["key"].as_str().unwrap_or("")
                );
                println!(
                    "{:<36}  {:<16}  {:>8}  {:>9}  {:<32}  {}",
                    letter["id"].as_str().unwrap_or(""),
                    letter["sink"].as_str().unwrap_or(""),
                    letter["attempts"],
                    age(letter["dead_for_secs"].as_u64().unwrap_or(0)),
                    object,
                    letter["reason"].as_str().unwrap_or("")
                );
            }
            println!("{} dead letter(s)", letters.len());
            Ok(())
        }
        Command::DeadLetters(DeadLetters::Show { id, remote }) => {
            let path = format!("/admin/dead-letters/{}", encode(id));
            let answer = call(args, remote, Method::GET, &path, &[]).await?;
            if remote.json {
                return print_json(&answer);
            }
            for field in ["id", "sink", "attempts", "reason", "dead_for_secs"] {
                let value = match &answer[field] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("{field:<14} {value}");
            }
            println!("event");
            println!(
                "{}",
                serde_json::to_string_pretty(&answer["event"]).unwrap_or_default()
            );
            Ok(())
        }
        Command::DeadLetters(DeadLetters::Redrive { select, remote }) => {
            let answer = call(
                args,
                remote,
                Method::POST,
                "/admin/dead-letters/redrive",
                &select.query(),
            )
            .await?;
            if remote.json {
                return print_json(&answer);
            }
            println!("redriven: {}", answer["redriven"]);
            print_by_sink(&answer);
            Ok(())
        }
        Command::DeadLetters(DeadLetters::Purge {
            select,
            all,
            remote,
        }) => {
            let mut query = select.query();
            if query.is_empty() && !*all {
                return Err(
                    "purge needs a selector (--sink, --id, --older-than, --newer-than) or --all"
                        .into(),
                );
            }
            if *all {
                query.push(("all", "true".into()));
            }
            let answer = call(args, remote, Method::DELETE, "/admin/dead-letters", &query).await?;
            if remote.json {
                return print_json(&answer);
            }
            println!("purged: {}", answer["purged"]);
            print_by_sink(&answer);
            Ok(())
        }
        // Run by `run_fleet_role`, never here.
        Command::Deliver | Command::Replay { .. } => Err("not an admin API command".into()),
        Command::Sinks(Sinks::Enable {
            name,
            redrive,
            remote,
        }) => {
            let path = format!("/admin/sinks/{}/enable", encode(name));
            let query = if *redrive {
                vec![("redrive", "true".to_owned())]
            } else {
                Vec::new()
            };
            let answer = call(args, remote, Method::POST, &path, &query).await?;
            if remote.json {
                return print_json(&answer);
            }
            if answer["was_disabled"] == Value::Bool(true) {
                println!("sink {name} enabled");
            } else {
                println!("sink {name} was not disabled");
            }
            if *redrive {
                println!("redriven: {}", answer["redriven"]);
            }
            Ok(())
        }
    }
}

impl Select {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        for (name, value) in [
            ("sink", &self.sink),
            ("id", &self.id),
            ("older_than", &self.older_than),
            ("newer_than", &self.newer_than),
        ] {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        query
    }
}

fn print_json(answer: &Value) -> Result<(), String> {
    println!(
        "{}",
        serde_json::to_string_pretty(answer).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn print_by_sink(answer: &Value) {
    if let Some(sinks) = answer["sinks"].as_object() {
        for (sink, n) in sinks {
            println!("  {sink}: {n}");
        }
    }
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// With a --config that has `[outbox]`, dead letters live in the outbox's
/// dead-letter stream or topic, which the command reads itself.
fn fleet_outbox(args: &Args) -> Result<Option<super::OutboxSettings>, String> {
    let Some(path) = &args.config else {
        return Ok(None);
    };
    let file = super::schema::read_file(path).map_err(|e| e.to_string())?;
    if file.outbox.is_none() {
        return Ok(None);
    }
    let config =
        super::Config::load(args, |name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    Ok(config.outbox)
}

/// The admin base URL and the token: flags, then the environment, then
/// the config file.
fn target(args: &Args, remote: &Remote) -> Result<(String, Option<String>), String> {
    let file = match &args.config {
        Some(path) => Some(super::schema::read_file(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let file_admin = file.as_ref().and_then(|f| f.admin.address.clone());
    let base = match (&remote.admin, file_admin) {
        (Some(url), _) => url.clone(),
        (None, Some(address)) => address.replace("0.0.0.0", "127.0.0.1"),
        (None, None) => DEFAULT_ADMIN_LISTEN.to_owned(),
    };
    let base = if base.starts_with("http://") || base.starts_with("https://") {
        base
    } else {
        format!("http://{base}")
    };
    let token = remote
        .token
        .clone()
        .or_else(|| {
            std::env::var("S3TAP_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
        })
        .or_else(|| file.and_then(|f| f.admin.token));
    Ok((base.trim_end_matches('/').to_owned(), token))
}

async fn call(
    args: &Args,
    remote: &Remote,
    method: Method,
    path: &str,
    query: &[(&str, String)],
) -> Result<Value, String> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    if let Some(settings) = fleet_outbox(args)? {
        return super::outbox::dead_letters_call(&settings, method, path, query).await;
    }
    let (base, token) = target(args, remote)?;
    if base.starts_with("https://") {
        return Err(format!(
            "{base}: the admin listener speaks plain HTTP; use http://"
        ));
    }
    let mut url = format!("{base}{path}");
    if !query.is_empty() {
        let pairs: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect();
        url.push('?');
        url.push_str(&pairs.join("&"));
    }
    let mut request = Request::builder().method(method).uri(&url);
    if let Some(token) = &token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("{url}: {e}"))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
            .await
            .map_err(|_| format!("{base} did not answer within 30 s"))?
            .map_err(|e| format!("cannot reach the admin API at {base}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{base}: {e}"))?
        .to_bytes();
    let value: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).trim().to_owned()));
    if status != StatusCode::OK {
        let message = value["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        let hint = if status == StatusCode::UNAUTHORIZED && token.is_none() {
            " (no token given: --token, S3TAP_ADMIN_TOKEN or [admin] token in --config)"
        } else {
            ""
        };
        return Err(format!("the admin API answered {status}: {message}{hint}"));
    }
    Ok(value)
}

/// Percent-encodes all but unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
