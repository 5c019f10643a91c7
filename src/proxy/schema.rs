//! The TOML file as written: every section and key, `deny_unknown_fields`
//! throughout so a typo never passes for a setting. Nothing here is checked
//! beyond its type; [`config`](super::config) resolves and checks it. One
//! file for the whole schema, so a key is found where the README's example
//! puts it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::resign::Addressing;
use crate::verify::PayloadHashing;

use super::error::ConfigError;

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

/// `[upstream] credentials`: which key signs requests to the upstream, as
/// the file names it. [`config`](super::config) resolves it, with the key
/// itself, into the re-signer's own `CredentialsSource`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum CredentialsSetting {
    /// The client's own key (it also works upstream): the Worker's behaviour.
    #[default]
    Client,
    /// One fixed upstream key for every client.
    Fixed,
    /// Each client's `upstream_*` key from `[[clients]]`.
    Mapped,
}

// ---- the file and its sections -------------------------------------------

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
    /// More `[[clients]]` in a file of their own, reloaded on SIGHUP and
    /// when it changes.
    pub clients_file: Option<PathBuf>,
    /// `[[rules]]`: which events go to which sinks.
    #[serde(default)]
    pub rules: Vec<crate::notify::Rule>,
    /// `[[sinks]]`: where events go.
    #[serde(default)]
    pub sinks: Vec<SinkSection>,
    /// `[outbox]`: fleet mode, events through NATS JetStream or Kafka.
    pub outbox: Option<OutboxSection>,
    /// `[b2_native]`: the B2 native API proxy on the same listener.
    pub b2_native: Option<B2NativeSection>,
    /// `[[transforms]]`: which uploads are compressed on the way up.
    #[serde(default)]
    pub transforms: Vec<TransformSection>,
}

/// `[b2_native]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct B2NativeSection {
    /// Where `b2_authorize_account` goes (B2: `https://api.backblazeb2.com`).
    pub api_url: String,
    /// The proxy's URL as clients reach it, written into the answers.
    pub public_url: Option<String>,
    /// Upstream download URL for downloads without a token (public buckets).
    pub download_url: Option<String>,
    /// Bound of the token map.
    pub max_tokens: Option<usize>,
    /// Bound of the upload URL map.
    pub max_upload_urls: Option<usize>,
}

/// `[[transforms]]`: one rule of the payload transform.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TransformSection {
    /// Buckets the rule covers (all when absent or empty).
    #[serde(default)]
    pub buckets: Vec<String>,
    /// Key prefix the rule covers (all keys when absent).
    #[serde(default)]
    pub prefix: String,
    /// `"zstd"` or `"gzip"`.
    pub codec: String,
    /// Compression level (zstd: 1..=19, default 3; gzip: 1..=9, default 6).
    pub level: Option<i32>,
}

/// `[outbox]`. Its `Debug` leaves out the URL (it may carry a password).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutboxSection {
    /// `nats://host:port[,nats://host:port...]` (JetStream) or
    /// `kafka://host:port[,host:port...]` (Kafka).
    pub url: String,
    /// Stream of the events (default `S3TAP_EVENTS`); with Kafka, the
    /// events topic (default `s3tap-events`).
    pub stream: Option<String>,
    /// Its subjects' prefix (default `s3tap.events`; JetStream only).
    pub subject_prefix: Option<String>,
    /// Stream of the dead letters (default `S3TAP_DEAD_LETTERS`); with
    /// Kafka, the dead-letter topic (default `s3tap-dead-letters`).
    pub dead_letter_stream: Option<String>,
    /// Its subjects' prefix (default `s3tap.dead`; JetStream only).
    pub dead_letter_subject_prefix: Option<String>,
    /// Replicas of the streams (replication factor of the topics) created
    /// when missing (default 1).
    pub replicas: Option<usize>,
    /// Partitions of the events topic created when missing (Kafka only,
    /// default 12).
    pub partitions: Option<i32>,
    /// Other librdkafka settings for the outbox's clients (Kafka only:
    /// SASL, TLS, ...).
    pub config: Option<std::collections::BTreeMap<String, String>>,
    /// How long the streams keep messages (default 7 days).
    pub max_age_secs: Option<u64>,
    /// The most bytes a stream keeps (default: no limit).
    pub max_bytes: Option<i64>,
    /// De-duplication window (default 120 s).
    pub duplicate_window_secs: Option<u64>,
    /// Commit a changing request's events before its answer (default true).
    pub commit: Option<bool>,
    /// The longest an answer waits for the commit (default 500 ms).
    pub commit_timeout_ms: Option<u64>,
    /// How long a deliverer has to settle a message (default 30 s).
    pub ack_wait_secs: Option<u64>,
    /// Also run the delivery role in this process (default false).
    pub deliver: Option<bool>,
    /// `/readyz` fails while the outbox is unreachable and the local
    /// buffer is fuller than this (default 0.5).
    pub readyz_max_buffer_fill: Option<f64>,
}

impl fmt::Debug for OutboxSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxSection")
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("commit", &self.commit)
            .field("deliver", &self.deliver)
            .finish_non_exhaustive()
    }
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
    /// Threads serving the S3 listener, each with its own runtime.
    pub workers: Option<usize>,
    /// Threads of the shared runtime: admin listener, dispatcher, sinks.
    pub shared_threads: Option<usize>,
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
    pub credentials: Option<CredentialsSetting>,
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
    pub payload_hashing: PayloadHashing,
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
    /// Most bytes an HTTP/1 connection reads from its socket at once
    /// (default 400 KiB); at least `max_header_bytes`.
    pub read_buffer_bytes: Option<usize>,
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
    /// An IAM JSON policy document restricting what the client may do.
    pub policy: Option<String>,
    /// A file holding such a document.
    pub policy_file: Option<PathBuf>,
    /// Shorthand: list and read these `bucket` or `bucket/prefix` scopes.
    pub readonly: Option<Vec<String>>,
    /// Shorthand: upload to these scopes.
    pub writeonly: Option<Vec<String>>,
    /// Shorthand: list, read, upload and delete in these scopes.
    pub readwrite: Option<Vec<String>>,
}

impl fmt::Debug for ClientSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSection")
            .field("access_key_id", &self.access_key_id)
            .field("identity", &self.identity)
            .field("upstream_access_key_id", &self.upstream_access_key_id)
            .field("manage_notifications", &self.manage_notifications)
            .field("policy", &self.policy.is_some())
            .field("policy_file", &self.policy_file)
            .field("readonly", &self.readonly)
            .field("writeonly", &self.writeonly)
            .field("readwrite", &self.readwrite)
            .finish_non_exhaustive()
    }
}
/// `[notify]`. Its `Debug` redacts the webhook secret.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// Where event notifications go (the Worker's `WEBHOOK_URL`).
    pub webhook_url: Option<String>,
    /// Signs that webhook as B2 does (`WEBHOOK_SECRET`).
    pub webhook_secret: Option<String>,
    /// Format of that webhook: `seed` (default), `b2`, `s3`, `cloudevents`,
    /// `cloudevents-batch`, `s3tap`.
    pub webhook_format: Option<String>,
    /// Directory of the durable event spool (default: `<data dir>/spool`
    /// with the embedded store, else `./s3tap-spool`).
    pub spool_dir: Option<PathBuf>,
    /// `always`, `interval` (default: group commit every 5 ms) or `never`.
    pub fsync: Option<String>,
    /// `head` (default: when the response head arrives) or `body_end`.
    pub emit_on: Option<String>,
    /// Capacity of the in-memory event queue (default 10000); beyond it
    /// events spill to the spool.
    pub queue_capacity: Option<usize>,
    /// Completes the size of an object a copy or multipart upload created,
    /// when the parts did not all pass through this proxy, with a `HEAD` of
    /// it at the upstream (default false: such events carry no size).
    #[serde(default)]
    pub head_for_size: bool,
    /// B2 identity for the `b2` format.
    #[serde(default)]
    pub b2: crate::notify::format::B2Identity,
    /// Most events the spool holds (default 10 000 000); beyond it new
    /// events are refused and counted.
    pub spool_max_events: Option<u64>,
    /// Most bytes of event records the spool holds (default 1 GiB).
    pub spool_max_bytes: Option<u64>,
    /// `/readyz` answers 503 once the spool is fuller than this fraction of
    /// its limits (0 < fill <= 1; default: off).
    pub readyz_max_spool_fill: Option<f64>,
}

impl std::fmt::Debug for NotifySection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySection")
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("webhook_format", &self.webhook_format)
            .field("spool_dir", &self.spool_dir)
            .field("fsync", &self.fsync)
            .field("emit_on", &self.emit_on)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

/// One `[[sinks]]` entry. Its `Debug` shows the name only: entries hold
/// secrets.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkSection {
    /// An HTTP webhook.
    Webhook {
        /// Name rules refer to.
        name: String,
        /// Target URL.
        url: String,
        /// Payload format (default `b2`).
        format: Option<String>,
        /// B2-style signature secret.
        b2_secret: Option<String>,
        /// Standard Webhooks secret (`whsec_...`).
        standard_webhooks_secret: Option<String>,
        /// Extra headers.
        #[serde(default)]
        headers: HashMap<String, String>,
        /// Request timeout, seconds (default 10).
        timeout_secs: Option<u64>,
        /// Most events per POST: 1 to 50 for `b2` (default 1, as B2's
        /// rules), 1 to the format's limit for the others (default that
        /// limit).
        max_events_per_batch: Option<usize>,
        /// Requests in flight at once per delivery (default 64; 1 keeps the
        /// sink's events in order).
        concurrency: Option<usize>,
        /// Send one `b2:TestEvent` when the sink starts, as B2's "Test Rule"
        /// does (`b2` format only; default false).
        #[serde(default)]
        test_event: bool,
    },
    /// JSON lines to a file or stdout.
    Jsonl {
        /// Name rules refer to.
        name: String,
        /// File to append to; stdout when absent.
        path: Option<PathBuf>,
    },
    /// Kafka (needs the `sink-kafka` feature).
    Kafka {
        /// Name rules refer to.
        name: String,
        /// `bootstrap.servers`.
        brokers: String,
        /// Default topic.
        topic: String,
        /// Topic per rule name.
        #[serde(default)]
        topics: HashMap<String, String>,
        /// Payload format (default `cloudevents`).
        format: Option<String>,
        /// Other librdkafka settings (SASL, TLS, ...).
        #[serde(default)]
        config: HashMap<String, String>,
    },
    /// NATS JetStream (needs the `sink-nats` feature).
    Nats {
        /// Name rules refer to.
        name: String,
        /// Server URL, e.g. `nats://127.0.0.1:4222`.
        url: String,
        /// Subject (the stream must exist).
        subject: String,
        /// Publish to `<subject>.<rule name>`.
        #[serde(default)]
        subject_per_rule: bool,
        /// Payload format (default `cloudevents`).
        format: Option<String>,
    },
    /// Redis Streams (needs the `sink-redis` feature).
    Redis {
        /// Name rules refer to.
        name: String,
        /// Server URL, e.g. `redis://127.0.0.1:6379`.
        url: String,
        /// Stream key.
        stream: String,
        /// Approximate `MAXLEN` trimming.
        max_len: Option<usize>,
        /// Payload format (default `cloudevents`).
        format: Option<String>,
    },
    /// RabbitMQ (needs the `sink-rabbitmq` feature).
    Rabbitmq {
        /// Name rules refer to.
        name: String,
        /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
        url: String,
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// Payload format (default `cloudevents`).
        format: Option<String>,
    },
    /// MQTT (needs the `sink-mqtt` feature).
    Mqtt {
        /// Name rules refer to.
        name: String,
        /// Broker host.
        host: String,
        /// Broker port (default 1883).
        port: Option<u16>,
        /// Topic.
        topic: String,
        /// Payload format (default `cloudevents`).
        format: Option<String>,
    },
    /// Amazon SNS (needs the `sink-sns` feature).
    Sns {
        /// Name rules refer to.
        name: String,
        /// Topic ARN (`.fifo` topics get group and de-duplication ids).
        topic_arn: String,
        /// Region.
        region: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: String,
        /// Endpoint override (e.g. a local emulator).
        endpoint: Option<String>,
        /// Payload format (default `s3`).
        format: Option<String>,
    },
    /// Amazon SQS (needs the `sink-sns` feature).
    Sqs {
        /// Name rules refer to.
        name: String,
        /// Queue URL.
        queue_url: String,
        /// Region.
        region: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: String,
        /// Endpoint override.
        endpoint: Option<String>,
        /// Payload format (default `s3`).
        format: Option<String>,
    },
}

impl std::fmt::Debug for SinkSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SinkSection({})", self.name())
    }
}

impl SinkSection {
    pub(super) fn name(&self) -> &str {
        match self {
            SinkSection::Webhook { name, .. }
            | SinkSection::Jsonl { name, .. }
            | SinkSection::Kafka { name, .. }
            | SinkSection::Nats { name, .. }
            | SinkSection::Redis { name, .. }
            | SinkSection::Rabbitmq { name, .. }
            | SinkSection::Mqtt { name, .. }
            | SinkSection::Sns { name, .. }
            | SinkSection::Sqs { name, .. } => name,
        }
    }

    /// The cargo feature that builds this kind of sink into the binary.
    pub(super) fn feature(&self) -> &'static str {
        match self {
            SinkSection::Webhook { .. } | SinkSection::Jsonl { .. } => "proxy",
            SinkSection::Kafka { .. } => "sink-kafka",
            SinkSection::Nats { .. } => "sink-nats",
            SinkSection::Redis { .. } => "sink-redis",
            SinkSection::Rabbitmq { .. } => "sink-rabbitmq",
            SinkSection::Mqtt { .. } => "sink-mqtt",
            SinkSection::Sns { .. } | SinkSection::Sqs { .. } => "sink-sns",
        }
    }
}

/// The file `clients_file` names: `[[clients]]` entries and nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientsFileSchema {
    /// `[[clients]]`
    #[serde(default)]
    pub clients: Vec<ClientSection>,
}

pub(crate) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    read_toml(path)
}

/// Reads and parses a TOML file. An error names the line and what is wrong
/// with it, never the line's text (it may hold a secret).
pub(super) fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
