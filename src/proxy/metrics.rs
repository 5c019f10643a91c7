//! Prometheus metrics of one proxy: requests by operation and status,
//! verification failures by reason, authorization denials by client, upstream latency, bytes in and out, and
//! the dispatcher's queue, spool and per-sink deliveries, retries,
//! failures, dead letters and the age of the oldest undelivered event,
//! rendered on the admin address at `/metrics`.
//!
//! Each proxy owns its recorder (no global one), so several proxies in one
//! process, as in tests, keep separate figures.

use std::collections::HashMap;
use std::sync::RwLock;

use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::notify::DispatcherStats;

const METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// Upstream latency buckets, seconds: from loopback to slow WAN uploads.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often [`ProxyMetrics::run_upkeep`] runs (the exporter's own
/// default when it installs itself globally).
pub(super) const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The proxy's metrics.
pub(super) struct ProxyMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    bytes_in: Counter,
    bytes_out: Counter,
    upstream_latency: Histogram,
    /// `s3tap_requests_total` handles by operation and status, resolved
    /// once: building a `Key` (two labels, the status as a `String`) and
    /// looking it up in the registry on every request showed in profiles.
    requests: RwLock<HashMap<(&'static str, u16), Counter>>,
}

impl ProxyMetrics {
    /// A fresh registry.
    pub(super) fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        let bytes_in = recorder.register_counter(
            &Key::from_static_name("s3tap_request_body_bytes_total"),
            &METADATA,
        );
        let bytes_out = recorder.register_counter(
            &Key::from_static_name("s3tap_response_body_bytes_total"),
            &METADATA,
        );
        let upstream_latency = recorder.register_histogram(
            &Key::from_static_name("s3tap_upstream_latency_seconds"),
            &METADATA,
        );
        ProxyMetrics {
            recorder,
            handle,
            bytes_in,
            bytes_out,
            upstream_latency,
            requests: RwLock::new(HashMap::new()),
        }
    }

    /// Counts request body bytes received from clients.
    pub(super) fn bytes_in(&self) -> Counter {
        self.bytes_in.clone()
    }

    /// Counts response body bytes sent to clients.
    pub(super) fn bytes_out(&self) -> Counter {
        self.bytes_out.clone()
    }

    /// Time from sending to the upstream to its response head.
    pub(super) fn observe_upstream_latency(&self, seconds: f64) {
        self.upstream_latency.record(seconds);
    }

    /// Folds the latency samples recorded since the last call into the
    /// histogram. The exporter buffers every sample until this runs (a
    /// scrape does it too), so the proxy calls it every
    /// [`UPKEEP_INTERVAL`]: without it, a proxy nobody scrapes grows by
    /// each request's sample.
    pub(super) fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// One request finished with `status`.
    pub(super) fn request(&self, operation: &'static str, status: u16) {
        if let Some(counter) = self
            .requests
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(operation, status))
        {
            counter.increment(1);
            return;
        }
        let counter = {
            let key = Key::from_parts(
                "s3tap_requests_total",
                vec![
                    Label::new("operation", operation),
                    Label::new("status", status.to_string()),
                ],
            );
            let counter = self.recorder.register_counter(&key, &METADATA);
            self.requests
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert((operation, status), counter.clone());
            counter
        };
        counter.increment(1);
    }

    /// A layer refused a request.
    pub(super) fn rejection(&self, layer: &'static str, reason: &'static str) {
        let key = Key::from_parts(
            "s3tap_rejections_total",
            vec![Label::new("layer", layer), Label::new("reason", reason)],
        );
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// The authorization layer refused `client` (identity or key id, never
    /// a secret) `action` for `reason`
    /// (`s3tap_authorization_denied_total{client,action,reason}`).
    pub(super) fn authorization_denied(
        &self,
        client: &str,
        action: &'static str,
        reason: &'static str,
    ) {
        let key = Key::from_parts(
            "s3tap_authorization_denied_total",
            vec![
                Label::new("client", client.to_owned()),
                Label::new("action", action),
                Label::new("reason", reason),
            ],
        );
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// How long the oldest event still waiting for `sink` has waited
    /// (`s3tap_oldest_undelivered_seconds{sink}`; 0 when none waits).
    pub(super) fn oldest_undelivered(&self, sink: &str, seconds: f64) {
        let key = Key::from_parts(
            "s3tap_oldest_undelivered_seconds",
            vec![Label::new("sink", sink.to_owned())],
        );
        self.recorder.register_gauge(&key, &METADATA).set(seconds);
    }

    /// The Prometheus text exposition, with the dispatcher's current figures.
    pub(super) fn render(&self, stats: &DispatcherStats) -> String {
        let gauge = |name: &'static str, value: u64| {
            self.recorder
                .register_gauge(&Key::from_static_name(name), &METADATA)
                .set(value as f64);
        };
        gauge("s3tap_events_queued", stats.queued);
        gauge("s3tap_events_spooled", stats.spooled);
        gauge("s3tap_spool_bytes", stats.spool_bytes);
        gauge("s3tap_events_spool_full_total", stats.spool_full);
        gauge("s3tap_events_dropped_total", stats.dropped);
        gauge(
            "s3tap_events_delivered_unspooled_total",
            stats.delivered_unspooled,
        );
        gauge("s3tap_spool_commits_total", stats.commits);
        for sink in &stats.sinks {
            let labelled = |name: &'static str, value: u64| {
                let key = Key::from_parts(name, vec![Label::new("sink", sink.name.clone())]);
                self.recorder
                    .register_gauge(&key, &METADATA)
                    .set(value as f64);
            };
            labelled("s3tap_sink_delivered_total", sink.delivered);
            labelled("s3tap_sink_retried_total", sink.retried);
            labelled("s3tap_sink_failed_permanent_total", sink.failed_permanent);
            labelled("s3tap_sink_dead_lettered_total", sink.dead_lettered);
            labelled("s3tap_sink_dead_letters", sink.dead_letters);
            labelled("s3tap_sink_redriven_total", sink.redriven);
            labelled("s3tap_sink_disabled", u64::from(sink.disabled));
        }
        self.handle.render()
    }
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        ProxyMetrics::new()
    }
}

impl std::fmt::Debug for ProxyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyMetrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operations_gauges_are_exported_per_sink() {
        let metrics = ProxyMetrics::new();
        metrics.oldest_undelivered("hook", 12.5);
        let stats = DispatcherStats {
            sinks: vec![crate::notify::SinkStats {
                name: "hook".into(),
                dead_letters: 3,
                redriven: 7,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = metrics.render(&stats);
        for line in [
            "s3tap_oldest_undelivered_seconds{sink=\"hook\"} 12.5",
            "s3tap_sink_dead_letters{sink=\"hook\"} 3",
            "s3tap_sink_redriven_total{sink=\"hook\"} 7",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn upkeep_folds_latency_samples_into_the_histogram_without_losing_any() {
        let metrics = ProxyMetrics::new();
        for _ in 0..1000 {
            metrics.observe_upstream_latency(0.002);
        }
        metrics.run_upkeep();
        metrics.observe_upstream_latency(0.2);
        let text = metrics.render(&DispatcherStats::default());
        assert!(
            text.contains("s3tap_upstream_latency_seconds_count 1001"),
            "{text}"
        );
        assert!(
            text.contains("s3tap_upstream_latency_seconds_bucket{le=\"0.0025\"} 1000"),
            "{text}"
        );
    }
}
