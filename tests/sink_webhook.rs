//! WebhookSink on the wire: its signatures checked by the crate's own
//! VerifyWebhookLayer and by Python's `hmac`, the answer of each status,
//! timeouts, refused connections, and HTTPS with an added root.
#![cfg(all(feature = "sink-webhook", feature = "webhook"))]

mod notify_support;
#[allow(dead_code)]
#[path = "support/server.rs"]
mod server;

use std::convert::Infallible;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use notify_support::{closed_port, free, Receiver, Reply, Seen};
use s3tap::notify::format::{CloudEventsMode, Encoder, Format, FormatOptions};
use s3tap::notify::{Event, S3Operation};
use s3tap::sink::{Sink, SinkBuildError, SinkError, WebhookSink};
use s3tap::webhook::VerifyWebhookLayer;
use server::TestServer;
use tower::Layer;

const B2_SECRET: &str = "b2-rule-signing-secret-0123456789";
// The Standard Webhooks specification's example secret.
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn batch(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut event = Event::new(
                S3Operation::PutObject,
                "PUT",
                200,
                format!("http://s3.test/b/k{i}"),
            );
            event.key = Some(format!("k{i}"));
            event
        })
        .collect()
}

/// A server that verifies with `layer` and records the bodies it accepted.
async fn verifying_server(layer: VerifyWebhookLayer) -> (TestServer, Arc<Mutex<Vec<Bytes>>>) {
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let sink = accepted.clone();
    let inner = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let sink = sink.clone();
        async move {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            sink.lock().unwrap().push(body);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    (TestServer::spawn(layer.layer(inner)).await, accepted)
}

#[tokio::test]
async fn b2_signature_is_accepted_by_verify_webhook_layer() {
    let (server, accepted) = verifying_server(VerifyWebhookLayer::b2(B2_SECRET)).await;
    let url = format!("{}/b2", server.url());
    let events = batch(3);
    let sink = WebhookSink::builder(&url)
        .sign_b2(B2_SECRET)
        .build()
        .unwrap();
    sink.deliver(&events)
        .await
        .expect("the receiver verifies the B2 signature");
    let bodies = accepted.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    // The default body: the events in s3tap's schema, in order.
    let got: Vec<serde_json::Value> = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(got.len(), events.len());
    for (got, sent) in got.iter().zip(&events) {
        assert_eq!(got["schema"], "s3tap.event/1");
        assert_eq!(got["id"], sent.id.as_str());
        assert_eq!(got["key"].as_str(), sent.key.as_deref());
    }

    // A wrong secret is refused (401): permanent, not worth retrying.
    let wrong = WebhookSink::builder(&url)
        .sign_b2("another-secret")
        .build()
        .unwrap();
    let error = wrong.deliver(&events).await.unwrap_err();
    assert!(
        matches!(error, SinkError::Permanent { ref message } if message.contains("401")),
        "{error}"
    );
}

#[tokio::test]
async fn standard_webhooks_signature_is_accepted_by_verify_webhook_layer() {
    let (server, accepted) = verifying_server(
        VerifyWebhookLayer::standard_webhooks(WHSEC)
            .unwrap()
            .replay_cache(100),
    )
    .await;
    let url = format!("{}/hooks", server.url());
    let sink = WebhookSink::builder(&url)
        .sign_standard_webhooks(WHSEC)
        .format(Encoder::new(
            Format::CloudEvents {
                mode: CloudEventsMode::Batch,
            },
            FormatOptions::default(),
        ))
        .build()
        .unwrap();
    sink.deliver(&batch(1)).await.expect("single event");
    sink.deliver(&batch(4)).await.expect("batch");
    assert_eq!(accepted.lock().unwrap().len(), 2);
    // Both schemes at once: each header is checked by its own layer.
    let both = WebhookSink::builder(&url)
        .sign_b2(B2_SECRET)
        .sign_standard_webhooks(WHSEC)
        .build()
        .unwrap();
    both.deliver(&batch(2))
        .await
        .expect("standard webhooks verifies");
    let wrong = WebhookSink::builder(&url)
        .sign_standard_webhooks("whsec_c2VjcmV0LWtleS10aGF0LWlzLWRpZmZlcmVudA==")
        .build()
        .unwrap();
    assert!(matches!(
        wrong.deliver(&batch(1)).await,
        Err(SinkError::Permanent { .. })
    ));
}

#[test]
fn signatures_match_python_hmac() {
    let events = batch(2);
    let sink = WebhookSink::builder("http://127.0.0.1:1/hook")
        .header(
            HeaderName::from_static("x-tenant"),
            HeaderValue::from_static("acme"),
        )
        .sign_b2(B2_SECRET)
        .sign_standard_webhooks(WHSEC)
        .build()
        .unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let request = sink.request(&events, now);
    let headers = request.headers().clone();
    let body = futures_body(request);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body");
    std::fs::write(&path, &body).unwrap();
    let script = r#"
import base64, hashlib, hmac, sys
body = open(sys.argv[1], 'rb').read()
b2 = hmac.new(sys.argv[2].encode(), body, hashlib.sha256).hexdigest()
key = base64.b64decode(sys.argv[3].split('_', 1)[1])
signed = sys.argv[4].encode() + b'.' + sys.argv[5].encode() + b'.' + body
std = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
print('v1=' + b2)
print('v1,' + std)
"#;
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("webhook-timestamp"), "1700000000");
    assert!(header("webhook-id").starts_with("batch_"));
    assert_eq!(header("x-tenant"), "acme");
    assert_eq!(header("content-type"), "application/json");
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .arg(B2_SECRET)
        .arg(WHSEC)
        .arg(header("webhook-id"))
        .arg(header("webhook-timestamp"))
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], header("x-bz-event-notification-signature"));
    assert_eq!(lines[1], header("webhook-signature"));

    // One event: the webhook-id is the event id, stable across retries.
    let one = batch(1);
    let first = sink.request(&one, now);
    let again = sink.request(&one, now + Duration::from_secs(30));
    assert_eq!(first.headers()["webhook-id"], one[0].id.as_str());
    assert_eq!(first.headers()["webhook-id"], again.headers()["webhook-id"]);
}

fn futures_body(request: Request<Full<Bytes>>) -> Bytes {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(request.into_body().collect())
        .unwrap()
        .to_bytes()
}

#[tokio::test]
async fn statuses_map_to_sink_errors() {
    let receiver = Receiver::start(
        free(),
        Arc::new(|seen: &Seen| match seen.n {
            0 => Reply::Status(204),
            1 => Reply::Status(500),
            2 => Reply::StatusWith(429, vec![("retry-after", "7".into())]),
            3 => Reply::StatusWith(
                503,
                vec![("retry-after", "Wed, 21 Oct 2099 07:28:00 GMT".into())],
            ),
            4 => Reply::Status(410),
            5 => Reply::Status(400),
            6 => Reply::Status(404),
            7 => Reply::Status(408),
            _ => Reply::Status(502),
        }),
    )
    .await;
    let sink = WebhookSink::builder(receiver.url()).build().unwrap();
    let events = batch(2);
    let mut results = Vec::new();
    for _ in 0..9 {
        results.push(sink.deliver(&events).await);
    }
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(SinkError::Transient {
            retry_after: None,
            ..
        })
    ));
    assert!(
        matches!(results[2], Err(SinkError::Transient { retry_after: Some(d), .. }) if d == Duration::from_secs(7))
    );
    assert!(
        matches!(results[3], Err(SinkError::Transient { retry_after: Some(d), .. }) if d > Duration::from_secs(3600))
    );
    assert!(matches!(results[4], Err(SinkError::Disabled { .. })));
    assert!(matches!(results[5], Err(SinkError::Permanent { .. })));
    assert!(matches!(results[6], Err(SinkError::Permanent { .. })));
    assert!(matches!(results[7], Err(SinkError::Transient { .. })));
    assert!(matches!(results[8], Err(SinkError::Transient { .. })));
    // The body the receiver got is the default JSON array.
    let first = &receiver.log.records()[0].seen;
    assert_eq!(
        first.ids,
        events.iter().map(|e| e.id.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(first.headers["content-type"], "application/json");
    assert!(first.headers["user-agent"]
        .to_str()
        .unwrap()
        .starts_with("s3tap/"));
}

#[tokio::test]
async fn a_slow_receiver_times_out_and_a_closed_port_is_transient() {
    let receiver = Receiver::start(free(), Arc::new(|_: &Seen| Reply::Hang)).await;
    let sink = WebhookSink::builder(receiver.url())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = sink.deliver(&batch(1)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(error, SinkError::Transient { ref message, .. } if message.contains("no answer")),
        "{error}"
    );

    let down = WebhookSink::builder(format!("http://{}/hook", closed_port()))
        .build()
        .unwrap();
    let error = down.deliver(&batch(1)).await.unwrap_err();
    assert!(matches!(error, SinkError::Transient { .. }), "{error}");
}

/// A receiver that holds each request until `hold` are in flight together
/// (or a generous second passed), then answers 500 for a body naming
/// `failing_key` and 204 for the others; it records the most requests it
/// saw in flight at once and the HTTP versions.
async fn gathering_receiver(
    hold: usize,
    failing_key: &'static str,
    tls: bool,
) -> (TestServer, Arc<Mutex<(usize, Vec<http::Version>)>>) {
    let seen = Arc::new(Mutex::new((0usize, Vec::new())));
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let state = seen.clone();
    let service = tower::service_fn(move |request: Request<hyper::body::Incoming>| {
        let state = state.clone();
        let in_flight = in_flight.clone();
        async move {
            let version = request.version();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            {
                let mut state = state.lock().unwrap();
                state.0 = state.0.max(now);
                state.1.push(version);
            }
            let deadline = Instant::now() + Duration::from_secs(1);
            while in_flight.load(std::sync::atomic::Ordering::SeqCst) < hold
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Everyone waits until the last of the group has seen the count.
            tokio::time::sleep(Duration::from_millis(20)).await;
            in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            let needle = format!("/{failing_key}\"");
            let failing = body.windows(needle.len()).any(|w| w == needle.as_bytes());
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = if failing {
                http::StatusCode::INTERNAL_SERVER_ERROR
            } else {
                http::StatusCode::NO_CONTENT
            };
            Ok::<_, Infallible>(response)
        }
    });
    let server = if tls {
        TestServer::spawn_tls(service).await
    } else {
        TestServer::spawn(service).await
    };
    (server, seen)
}

#[tokio::test]
async fn one_delivery_sends_its_messages_at_once_and_each_answer_counts_for_its_events() {
    let (server, seen) = gathering_receiver(4, "k5", false).await;
    // The seed format carries one event per POST.
    let sink = WebhookSink::builder(format!("{}/hook", server.url()))
        .format(Encoder::new(Format::Seed, FormatOptions::default()))
        .concurrency(4)
        .build()
        .unwrap();
    assert_eq!(sink.max_batch(), 4, "one event per message, four at once");
    let events = batch(4);
    sink.deliver(&events).await.expect("all four answered 204");
    assert_eq!(
        seen.lock().unwrap().0,
        4,
        "the four POSTs were in flight together"
    );

    // Handed more than one delivery's worth (a caller that ignores
    // max_batch), the sink still answers for every event: only k5's message
    // failed, so only event 5 is retried.
    let events = batch(8);
    match sink.deliver(&events).await {
        Err(SinkError::Partial { failed }) => {
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert_eq!(failed[0].0, 5);
            assert!(matches!(failed[0].1, SinkError::Transient { .. }));
        }
        other => panic!("expected a partial failure of event 5, got {other:?}"),
    }

    // concurrency(1): one request at a time, in order.
    let (server, seen) = gathering_receiver(2, "none", false).await;
    let in_order = WebhookSink::builder(format!("{}/hook", server.url()))
        .format(Encoder::new(Format::Seed, FormatOptions::default()))
        .concurrency(1)
        .build()
        .unwrap();
    assert_eq!(in_order.max_batch(), 1);
    for event in batch(3).chunks(1) {
        in_order.deliver(event).await.unwrap();
    }
    assert_eq!(seen.lock().unwrap().0, 1);
}

#[tokio::test]
async fn a_429_stops_a_delivery_from_starting_more_requests() {
    let receiver = Receiver::start(
        free(),
        Arc::new(|_: &Seen| Reply::StatusWith(429, vec![("retry-after", "2".into())])),
    )
    .await;
    let sink = WebhookSink::builder(receiver.url())
        .format(Encoder::new(Format::Seed, FormatOptions::default()))
        .concurrency(4)
        .build()
        .unwrap();
    let events = batch(12);
    match sink.deliver(&events).await {
        Err(SinkError::Transient { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(2)));
        }
        other => panic!("expected the whole delivery to wait 2 s, got {other:?}"),
    }
    // The first four were in flight together; none started after a 429.
    assert_eq!(receiver.log.records().len(), 4);
}

#[tokio::test]
async fn https_receivers_that_offer_http2_get_a_delivery_over_it() {
    let (server, seen) = gathering_receiver(3, "none", true).await;
    let pem = std::fs::read(server.ca_pem().unwrap()).unwrap();
    let sink = WebhookSink::builder(format!("{}/hook", server.url()))
        .format(Encoder::new(Format::Seed, FormatOptions::default()))
        .concurrency(3)
        .add_root_certificate(pem)
        .build()
        .unwrap();
    sink.deliver(&batch(3)).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.0, 3);
    assert_eq!(seen.1, vec![http::Version::HTTP_2; 3]);
}

#[tokio::test]
async fn https_with_an_added_root_certificate() {
    let service = tower::service_fn(|_: Request<hyper::body::Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let server = TestServer::spawn_tls(service).await;
    let url = format!("{}/hook", server.url());
    let pem = std::fs::read(server.ca_pem().unwrap()).unwrap();

    let trusting = WebhookSink::builder(&url)
        .add_root_certificate(pem)
        .build()
        .unwrap();
    trusting
        .deliver(&batch(2))
        .await
        .expect("TLS with the test CA");

    // Only the webpki roots: the test CA is unknown.
    let strict = WebhookSink::builder(&url).build().unwrap();
    let error = strict.deliver(&batch(1)).await.unwrap_err();
    assert!(
        matches!(error, SinkError::Transient { ref message, .. } if message.to_lowercase().contains("certificate")),
        "{error}"
    );

    assert!(matches!(
        WebhookSink::builder(&url)
            .add_root_certificate(b"not a pem".to_vec())
            .build(),
        Err(SinkBuildError::InvalidCertificate(_))
    ));
}
