//! SnsSink and SqsSink against moto server with signature checking on
//! (`support::upstreams::Moto`: an IAM user and key made while auth is off,
//! then `reset-auth`), so every request of the sinks is checked against that
//! key's secret. Messages are read back from SQS with boto3.
#![cfg(feature = "sink-sns")]

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use s3tap::credentials::UpstreamCredentials;
use s3tap::notify::{Event, S3Operation};
use s3tap::sink::{Sink, SinkError, SnsSink, SqsSink};
use serde_json::Value;
use support::upstreams::{self, UpstreamPeer};
use support::Peers;

const REGION: &str = "us-east-1";

/// Creates the topics and queues with the key moto checks (made by
/// `support::upstreams::Moto`) and prints what it made.
const SETUP: &str = r#"
import json, sys
import boto3
ep, key_id, secret = sys.argv[1:4]
kw = dict(endpoint_url=ep, region_name="us-east-1",
          aws_access_key_id=key_id, aws_secret_access_key=secret)
sns = boto3.client("sns", **kw)
sqs = boto3.client("sqs", **kw)
out = {}
out["topic"] = sns.create_topic(Name="s3-events")["TopicArn"]
out["fifo_topic"] = sns.create_topic(Name="s3-events.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
def queue(name, **attributes):
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn
raw_url, raw_arn = queue("from-sns-raw")
env_url, env_arn = queue("from-sns-envelope")
fifo_url, fifo_arn = queue("from-sns.fifo", FifoQueue="true")
direct_url, _ = queue("direct")
direct_fifo_url, _ = queue("direct.fifo", FifoQueue="true")
sns.subscribe(TopicArn=out["topic"], Protocol="sqs", Endpoint=raw_arn,
              Attributes={"RawMessageDelivery": "true"})
sns.subscribe(TopicArn=out["topic"], Protocol="sqs", Endpoint=env_arn)
sns.subscribe(TopicArn=out["fifo_topic"], Protocol="sqs", Endpoint=fifo_arn,
              Attributes={"RawMessageDelivery": "true"})
out.update(raw=raw_url, envelope=env_url, fifo=fifo_url, direct=direct_url, direct_fifo=direct_fifo_url)
print(json.dumps(out))
"#;

/// Receives up to `expected` messages (bodies, attributes and, for FIFO
/// queues, group and dedup ids) and deletes them.
const RECEIVE: &str = r#"
import json, sys, time
import boto3
ep, key_id, secret, url, expected, timeout = sys.argv[1:7]
sqs = boto3.client("sqs", endpoint_url=ep, region_name="us-east-1",
                   aws_access_key_id=key_id, aws_secret_access_key=secret)
got = []
deadline = time.time() + float(timeout)
while len(got) < int(expected) and time.time() < deadline:
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                 MessageAttributeNames=["All"], AttributeNames=["All"])
    for m in answer.get("Messages", []):
        got.append({
            "body": m["Body"],
            "attributes": {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()},
            "group": m.get("Attributes", {}).get("MessageGroupId"),
            "dedup": m.get("Attributes", {}).get("MessageDeduplicationId"),
        })
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
print(json.dumps(got))
"#;

/// moto with signature checking on (`support::upstreams::Moto`), and the
/// topics and queues [`SETUP`] made with its key.
struct Moto {
    server: upstreams::Moto,
    python: &'static Path,
    setup: Value,
}

fn python(python: &Path, script: &str, args: &[&str]) -> String {
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

impl Moto {
    /// A fresh moto server with signature checking on and the topics and
    /// queues made, or `None` when the developer opted out of peers.
    async fn start() -> Option<Moto> {
        let interpreter = Peers::get()?.python();
        let server = upstreams::Moto::start().await?;
        let creds = server.creds();
        let out = python(
            interpreter,
            SETUP,
            &[server.endpoint(), &creds.access_key, &creds.secret_key],
        );
        Some(Moto {
            setup: serde_json::from_str(&out).expect("setup output"),
            server,
            python: interpreter,
        })
    }

    fn endpoint(&self) -> &str {
        self.server.endpoint()
    }

    fn key_id(&self) -> &str {
        &self.server.creds().access_key
    }

    fn get(&self, name: &str) -> &str {
        self.setup[name].as_str().unwrap()
    }

    fn credentials(&self) -> UpstreamCredentials {
        let creds = self.server.creds();
        UpstreamCredentials::new(creds.access_key.as_str(), creds.secret_key.as_str())
    }

    fn sns(&self, topic: &str) -> SnsSink {
        SnsSink::builder(self.get(topic), REGION, self.credentials())
            .endpoint(self.endpoint().parse().unwrap())
            .build()
            .unwrap()
    }

    fn receive(&self, queue: &str, expected: usize) -> Vec<Value> {
        self.receive_for(queue, expected, 30)
    }

    /// Waits at most `seconds`: for checks that no more messages come.
    fn receive_for(&self, queue: &str, expected: usize, seconds: u32) -> Vec<Value> {
        let out = python(
            self.python,
            RECEIVE,
            &[
                self.endpoint(),
                &self.server.creds().access_key,
                &self.server.creds().secret_key,
                self.get(queue),
                &expected.to_string(),
                &seconds.to_string(),
            ],
        );
        serde_json::from_str::<Vec<Value>>(&out).unwrap()
    }
}

/// `n` events; every `big_every`-th one carries a ~100 KiB key, so the
/// batches must be split by size as well as by count.
fn events(n: usize, big_every: Option<usize>) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut event = Event::new(
                S3Operation::PutObject,
                "PUT",
                200,
                format!("http://s3.test/photos/{i}"),
            );
            event.bucket = Some("photos".into());
            let key = match big_every {
                Some(k) if i % k == 0 => format!("big-{i}-{}", "x".repeat(100 * 1024)),
                _ => format!("dir/obj {i} é.jpg"),
            };
            event.key = Some(key);
            event.size = Some(i as u64);
            event
        })
        .collect()
}

fn by_id(events: &[Event]) -> HashMap<String, &Event> {
    events.iter().map(|e| (e.id.to_string(), e)).collect()
}

/// Checks a raw-delivered (or direct SQS) message against its event.
fn check_raw(message: &Value, events: &HashMap<String, &Event>) -> String {
    let attributes = &message["attributes"];
    let id = attributes["eventId"].as_str().expect("eventId attribute");
    let event = events[id];
    assert_eq!(attributes["eventName"], "ObjectCreated:Put");
    assert_eq!(attributes["bucket"], "photos");
    assert_eq!(attributes["key"], event.key.as_deref().unwrap());
    let body: Value = serde_json::from_str(message["body"].as_str().unwrap()).unwrap();
    let record = &body["Records"][0];
    assert_eq!(record["eventName"], "ObjectCreated:Put");
    assert_eq!(record["s3"]["bucket"]["name"], "photos");
    assert_eq!(record["s3"]["object"]["size"], event.size.unwrap());
    id.to_owned()
}

#[tokio::test]
async fn sns_to_sqs_batches_split_at_ten_and_at_256_kib() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let sink = moto.sns("topic");
    assert!(!sink.is_fifo());
    // 25 events, 5 of them ~100 KiB: batches split by count and by size.
    let batch = events(25, Some(5));
    sink.deliver(&batch).await.expect("published");
    let expected = by_id(&batch);

    let raw = moto.receive("raw", 25);
    assert_eq!(raw.len(), 25);
    let ids: HashSet<String> = raw.iter().map(|m| check_raw(m, &expected)).collect();
    assert_eq!(ids.len(), 25, "every event once");

    // Without raw delivery SQS gets SNS's JSON envelope, attributes inside.
    let envelopes = moto.receive("envelope", 25);
    assert_eq!(envelopes.len(), 25);
    let mut ids = HashSet::new();
    for message in &envelopes {
        let envelope: Value = serde_json::from_str(message["body"].as_str().unwrap()).unwrap();
        assert_eq!(envelope["Type"], "Notification");
        assert_eq!(envelope["TopicArn"], moto.get("topic"));
        let attributes = &envelope["MessageAttributes"];
        let id = attributes["eventId"]["Value"].as_str().unwrap();
        assert_eq!(attributes["eventId"]["Type"], "String");
        let event = expected[id];
        assert_eq!(attributes["key"]["Value"], event.key.as_deref().unwrap());
        let inner: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
        assert_eq!(
            inner["Records"][0]["s3"]["object"]["size"],
            event.size.unwrap()
        );
        ids.insert(id.to_owned());
    }
    assert_eq!(ids.len(), 25);

    // A single event goes out as Publish.
    let one = events(1, None);
    sink.deliver(&one).await.expect("published");
    let got = moto.receive("raw", 1);
    assert_eq!(check_raw(&got[0], &by_id(&one)), one[0].id.to_string());
}

#[tokio::test]
async fn an_event_over_256_kib_is_refused_alone() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let sink = moto.sns("topic");
    let mut batch = events(3, None);
    batch[1].key = Some("y".repeat(300 * 1024));
    match sink.deliver(&batch).await {
        Err(SinkError::Partial { failed }) => {
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].0, 1);
            assert!(
                matches!(&failed[0].1, SinkError::Permanent { message } if message.contains("262144")),
                "{failed:?}"
            );
        }
        other => panic!("expected a partial failure, got {other:?}"),
    }
    let got = moto.receive("raw", 2);
    let ids: HashSet<String> = got.iter().map(|m| check_raw(m, &by_id(&batch))).collect();
    assert_eq!(
        ids,
        HashSet::from([batch[0].id.to_string(), batch[2].id.to_string()])
    );
}

#[tokio::test]
async fn a_wrong_secret_is_a_permanent_error_naming_the_signature() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let wrong = UpstreamCredentials::new(moto.key_id(), "not-the-secret");
    let sns = SnsSink::builder(moto.get("topic"), REGION, wrong.clone())
        .endpoint(moto.endpoint().parse().unwrap())
        .build()
        .unwrap();
    for batch in [events(1, None), events(3, None)] {
        match sns.deliver(&batch).await {
            Err(SinkError::Permanent { message }) => {
                assert!(message.contains("SignatureDoesNotMatch"), "{message}");
                assert!(message.contains("signature"), "{message}");
            }
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }
    let sqs = SqsSink::builder(moto.get("direct"), REGION, wrong)
        .endpoint(moto.endpoint().parse().unwrap())
        .build()
        .unwrap();
    let error = sqs.deliver(&events(2, None)).await.unwrap_err();
    assert!(matches!(error, SinkError::Permanent { .. }), "{error:?}");
    // An unknown key is refused permanently too.
    let unknown = UpstreamCredentials::new("AKIDUNKNOWN0000000000", "whatever");
    let sns = SnsSink::builder(moto.get("topic"), REGION, unknown)
        .endpoint(moto.endpoint().parse().unwrap())
        .build()
        .unwrap();
    let error = sns.deliver(&events(1, None)).await.unwrap_err();
    assert!(matches!(error, SinkError::Permanent { .. }), "{error:?}");
    // Nothing arrived.
    assert!(moto.receive_for("raw", 1, 3).is_empty());
}

#[tokio::test]
async fn sqs_directly_in_batches() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let sink = SqsSink::builder(moto.get("direct"), REGION, moto.credentials())
        .build()
        .unwrap();
    // The queue URL names the endpoint (moto's), no endpoint() needed.
    let batch = events(23, Some(7));
    sink.deliver(&batch).await.expect("sent");
    let got = moto.receive("direct", 23);
    let expected = by_id(&batch);
    let ids: HashSet<String> = got.iter().map(|m| check_raw(m, &expected)).collect();
    assert_eq!(ids.len(), 23);
}

#[tokio::test]
async fn fifo_topic_and_queue_carry_group_and_dedup_ids() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let sns = moto.sns("fifo_topic");
    assert!(sns.is_fifo());
    let mut batch = events(12, None);
    // Two objects, alternating: each keeps its own order.
    for (i, event) in batch.iter_mut().enumerate() {
        event.key = Some(format!("obj-{}", i % 2));
    }
    sns.deliver(&batch).await.expect("published");
    let got = moto.receive("fifo", 12);
    assert_eq!(got.len(), 12);
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    for message in &got {
        let id = message["attributes"]["eventId"]
            .as_str()
            .unwrap()
            .to_owned();
        let key = message["attributes"]["key"].as_str().unwrap();
        assert_eq!(message["group"], format!("photos/{key}"));
        assert_eq!(message["dedup"], id.as_str());
        order.entry(key.to_owned()).or_default().push(id);
    }
    for (key, ids) in order {
        let sent: Vec<String> = batch
            .iter()
            .filter(|e| e.key.as_deref() == Some(key.as_str()))
            .map(|e| e.id.to_string())
            .collect();
        assert_eq!(ids, sent, "order of {key}");
    }

    let sqs = SqsSink::builder(moto.get("direct_fifo"), REGION, moto.credentials())
        .build()
        .unwrap();
    assert!(sqs.is_fifo());
    let batch = events(5, None);
    sqs.deliver(&batch).await.expect("sent");
    // A redelivery of the same events is dropped by SQS's de-duplication.
    sqs.deliver(&batch).await.expect("sent again");
    let got = moto.receive_for("direct_fifo", 10, 5);
    assert_eq!(got.len(), 5, "FIFO de-duplicated the redelivery: {got:?}");
    let mut groups = HashSet::new();
    for (message, event) in got.iter().zip(&batch) {
        assert_eq!(message["dedup"], event.id.as_str());
        // "photos/dir/obj 0 é.jpg" has characters a group id may not hold:
        // it travels as its SHA-256.
        let group = message["group"].as_str().unwrap();
        assert!(group.starts_with("h-") && group.len() == 66, "{group}");
        groups.insert(group.to_owned());
    }
    assert_eq!(groups.len(), 5, "one group per object");
}

mod through_the_dispatcher {
    use super::*;
    use s3tap::notify::{Dispatcher, FsyncPolicy, RetryPolicy};
    use std::sync::{Arc, RwLock};

    fn fast_retry() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
            multiplier: 2.0,
            jitter: true,
            max_attempts: None,
            max_age: None,
        }
    }

    /// A sink whose SnsSink an operator replaces at run time: first one
    /// with a wrong endpoint (nothing listens there), then the right one.
    struct Switchable(RwLock<Arc<SnsSink>>);

    impl Sink for Switchable {
        fn name(&self) -> &str {
            "sns"
        }

        fn max_batch(&self) -> usize {
            100
        }

        fn deliver<'a>(
            &'a self,
            batch: &'a [Event],
        ) -> s3tap::sink::BoxFuture<'a, Result<(), SinkError>> {
            let sink = self.0.read().unwrap().clone();
            Box::pin(async move { sink.deliver(batch).await })
        }
    }

    async fn wait_for(
        what: &str,
        dispatcher: &Dispatcher,
        done: impl Fn(&s3tap::notify::SinkStats) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stats = dispatcher.stats();
            if done(&stats.sinks[0]) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {stats:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_then_fixed_endpoint_loses_nothing() {
        let Some(moto) = Moto::start().await else {
            return;
        };
        let nowhere = format!("http://127.0.0.1:{}", upstreams::free_port());
        let wrong = SnsSink::builder(moto.get("topic"), REGION, moto.credentials())
            .endpoint(nowhere.parse().unwrap())
            .build()
            .unwrap();
        let switch = Arc::new(Switchable(RwLock::new(Arc::new(wrong))));
        let dir = tempfile::tempdir().unwrap();
        let (dispatcher, task) = Dispatcher::builder()
            .sink("sns", switch.clone())
            .batch(100, Duration::from_millis(5))
            .retry(fast_retry())
            .spool(dir.path().join("spool.redb"), FsyncPolicy::default())
            .build()
            .await
            .unwrap();
        let batch = events(30, Some(10));
        for event in &batch {
            dispatcher.emit("sns", event.clone()).unwrap();
        }
        wait_for("a transient failure", &dispatcher, |s| s.retried > 0).await;
        let during = dispatcher.stats();
        assert_eq!(during.sinks[0].delivered, 0, "{during:?}");
        assert_eq!(during.sinks[0].failed_permanent, 0, "{during:?}");

        *switch.0.write().unwrap() = Arc::new(moto.sns("topic"));
        wait_for("all delivered", &dispatcher, |s| s.delivered == 30).await;
        let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
        task.await.unwrap();
        assert_eq!(stats.sinks[0].dead_lettered, 0, "{stats:?}");

        let got = moto.receive("raw", 30);
        let expected = by_id(&batch);
        let ids: HashSet<String> = got.iter().map(|m| check_raw(m, &expected)).collect();
        assert_eq!(ids.len(), 30, "none lost");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_secret_counts_as_permanent_and_is_dead_lettered() {
        let Some(moto) = Moto::start().await else {
            return;
        };
        let wrong = SnsSink::builder(
            moto.get("topic"),
            REGION,
            UpstreamCredentials::new(moto.key_id(), "not-the-secret"),
        )
        .endpoint(moto.endpoint().parse().unwrap())
        .build()
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (dispatcher, task) = Dispatcher::builder()
            .sink("sns", Arc::new(wrong))
            .batch(100, Duration::from_millis(5))
            .retry(fast_retry())
            .spool(dir.path().join("spool.redb"), FsyncPolicy::default())
            .build()
            .await
            .unwrap();
        for event in events(5, None) {
            dispatcher.emit("sns", event).unwrap();
        }
        wait_for("permanent failures", &dispatcher, |s| s.dead_lettered == 5).await;
        let stats = dispatcher.stats();
        assert_eq!(stats.sinks[0].failed_permanent, 5, "{stats:?}");
        assert_eq!(stats.sinks[0].delivered, 0, "{stats:?}");
        assert_eq!(
            stats.sinks[0].retried, 0,
            "no retry of a wrong secret: {stats:?}"
        );
        let dead = dispatcher.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 5);
        for letter in &dead {
            assert!(
                letter.reason.contains("SignatureDoesNotMatch"),
                "{}",
                letter.reason
            );
        }
        dispatcher.shutdown(Duration::from_secs(1)).await;
        task.await.unwrap();
    }
}
