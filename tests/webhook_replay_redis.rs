//! `RedisReplayStore`: two independent receivers sharing the Redis on
//! loopback refuse a message replayed from one to the other, mark a
//! repeated B2 delivery as a redelivery, forget ids when `PX` expires, and
//! answer `503` (fail closed) when their Redis goes away.
#![cfg(feature = "webhook-redis")]

mod broker_support;
mod webhook_support;

use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use s3tap::webhook::{Redelivery, RedisReplayStore, VerifyWebhookLayer};
use tower::{Layer, ServiceExt};
use webhook_support::{b2_header, hex_mac, request, standard_header};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const B2_SECRET: &str = "b2-rule-signing-secret-0123456789";

/// What a receiver's handler saw, or the layer's refusal.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The handler ran with a first delivery.
    Fresh,
    /// The handler ran with the `Redelivery` extension.
    Redelivery,
    /// The layer refused with this status and error code.
    Refused(StatusCode, String),
}

/// One receiver: the layer around a handler that says whether it saw the
/// `Redelivery` mark. Each receiver has its own connection to Redis, as
/// separate processes would.
#[derive(Clone)]
struct Receiver(VerifyWebhookLayer);

impl Receiver {
    async fn send(&self, request: Request<Full<Bytes>>) -> Seen {
        let handler = tower::service_fn(|request: Request<Full<Bytes>>| async move {
            let mark = if request.extensions().get::<Redelivery>().is_some() {
                "redelivery"
            } else {
                "fresh"
            };
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(mark))))
        });
        let response = self.0.layer(handler).oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        match (status, &body[..]) {
            (StatusCode::OK, b"fresh") => Seen::Fresh,
            (StatusCode::OK, b"redelivery") => Seen::Redelivery,
            _ => {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                Seen::Refused(status, json["error"].as_str().unwrap().to_owned())
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A prefix no other run (or test) shares.
fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("s3tap-test:{test}:{}:{nanos}:", std::process::id())
}

async fn receiver(url: &str, prefix: &str, layer: VerifyWebhookLayer) -> Receiver {
    let store = RedisReplayStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
        .prefix(prefix);
    Receiver(layer.replay_store(store))
}

fn standard_message(id: &str, body: &'static str) -> Request<Full<Bytes>> {
    let timestamp = unix_now().to_string();
    let signature = standard_header(WHSEC, id, &timestamp, body.as_bytes());
    request(
        &[
            ("webhook-id", id),
            ("webhook-timestamp", &timestamp),
            ("webhook-signature", &signature),
        ],
        body,
    )
}

fn b2_message(body: &'static str) -> Request<Full<Bytes>> {
    let signature = b2_header(B2_SECRET, body.as_bytes());
    request(&[("x-bz-event-notification-signature", &signature)], body)
}

async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_message_accepted_by_one_receiver_is_refused_by_the_other() {
    let Some(lease) = broker_support::REDIS.lease() else {
        return;
    };
    let url = format!("redis://{}/", lease.broker.addr());
    let prefix = unique_prefix("replay");
    let first = receiver(
        &url,
        &prefix,
        VerifyWebhookLayer::standard_webhooks(WHSEC).unwrap(),
    )
    .await;
    let second = receiver(
        &url,
        &prefix,
        VerifyWebhookLayer::standard_webhooks(WHSEC).unwrap(),
    )
    .await;

    let id = format!("msg_{}", prefix.replace(':', "_"));
    let body = r#"{"type":"invoice.paid"}"#;
    assert_eq!(first.send(standard_message(&id, body)).await, Seen::Fresh);
    assert_eq!(
        second.send(standard_message(&id, body)).await,
        Seen::Refused(StatusCode::UNAUTHORIZED, "replayed".into()),
        "the second receiver must know the id the first one accepted"
    );
    // The second receiver accepts what it has not seen: it refused the
    // replay, not everything.
    let other = format!("{id}_other");
    assert_eq!(
        second.send(standard_message(&other, body)).await,
        Seen::Fresh
    );
    assert_eq!(
        first.send(standard_message(&other, body)).await,
        Seen::Refused(StatusCode::UNAUTHORIZED, "replayed".into())
    );
    // A forged copy never takes a slot: refused for its signature, and the
    // id stays the first receiver's.
    let mut forged = standard_message(&format!("{id}_forged"), body);
    forged.headers_mut().insert(
        "webhook-signature",
        "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            .parse()
            .unwrap(),
    );
    assert_eq!(
        second.send(forged).await,
        Seen::Refused(StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
    assert_eq!(
        first
            .send(standard_message(&format!("{id}_forged"), body))
            .await,
        Seen::Fresh
    );

    // The key is the prefix and the hex id, remembered for twice the
    // default tolerance (300 s), as `PX` in Redis.
    let mut redis = redis_connection(&url).await;
    let key = format!("{prefix}{}", hex::encode(id.as_bytes()));
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        pttl > 0 && pttl <= 600_000,
        "PTTL of {key} is {pttl}, expected a TTL of at most 600000 ms"
    );
}

#[tokio::test]
async fn a_repeated_b2_delivery_reaches_the_other_receiver_marked_and_expires() {
    let Some(lease) = broker_support::REDIS.lease() else {
        return;
    };
    let url = format!("redis://{}/", lease.broker.addr());
    let prefix = unique_prefix("b2");
    // A one-second tolerance: ids are kept for 2 s (`PX 2000`).
    let layer = || VerifyWebhookLayer::b2(B2_SECRET).tolerance(Duration::from_secs(1));
    let first = receiver(&url, &prefix, layer()).await;
    let second = receiver(&url, &prefix, layer()).await;

    let body = r#"{"events":[{"eventType":"b2:ObjectCreated:Upload"}]}"#;
    let sent = Instant::now();
    assert_eq!(first.send(b2_message(body)).await, Seen::Fresh);
    assert_eq!(
        second.send(b2_message(body)).await,
        Seen::Redelivery,
        "B2 signs no timestamp: a repeat is the sender's retry, passed on marked"
    );

    let mut redis = redis_connection(&url).await;
    let key = format!("{prefix}{}", hex_mac(B2_SECRET.as_bytes(), body.as_bytes()));
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        pttl > 0 && pttl <= 2_000,
        "PTTL of {key} is {pttl}, expected at most 2000 ms"
    );

    // Wait for Redis to forget the id (bounded generously), then the same
    // delivery is a first one again, on either receiver.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        if exists == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{key} still in Redis after {:?}",
            sent.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "the id expired {:?} after the first delivery",
        sent.elapsed()
    );
    assert_eq!(second.send(b2_message(body)).await, Seen::Fresh);
    assert_eq!(first.send(b2_message(body)).await, Seen::Redelivery);
}

/// A Redis of the test's own on a free port, killed on drop.
struct OwnRedis(Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_receiver_whose_redis_is_gone_answers_503_and_accepts_once_it_is_back() {
    // Only this test's own server is stopped: the shared one serves others.
    if broker_support::REDIS.lease().is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = || {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (see tests/broker_support) is installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis(child)
    };
    let server = start();
    let url = format!("redis://127.0.0.1:{port}/");
    let receiver = receiver(
        &url,
        &unique_prefix("down"),
        VerifyWebhookLayer::b2(B2_SECRET),
    )
    .await;
    assert_eq!(receiver.send(b2_message("{\"n\":1}")).await, Seen::Fresh);

    drop(server);
    assert_eq!(
        receiver.send(b2_message("{\"n\":2}")).await,
        Seen::Refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "replay_store_unavailable".into()
        ),
        "without an answer from Redis the message is refused so the sender retries"
    );

    // The sender's retry succeeds once Redis is back (the connection is
    // re-established in the background; retried as a sender would).
    let _server = start();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match receiver.send(b2_message("{\"n\":2}")).await {
            Seen::Fresh => break,
            Seen::Refused(StatusCode::SERVICE_UNAVAILABLE, _) => {
                assert!(Instant::now() < deadline, "still 503 with Redis back");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
