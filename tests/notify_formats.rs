//! Each wire format, field by field, for a fixed set of events: the JSON is
//! parsed back and every field's presence, type and value is checked against
//! the format's documented schema.
#![cfg(feature = "notify")]

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use s3tap::notify::format::{
    binary_headers, BindingProtocol, CloudEventsMode, Encoder, Format, FormatOptions,
};
use s3tap::notify::format::{B2Identity, EncodedBody};
use s3tap::notify::{Event, EventId, S3Operation};

const T0_MS: u64 = 1_700_000_000_123;

fn base(n: u64, operation: S3Operation, method: &str, status: u16, key: &str) -> Event {
    let mut e = Event::new(
        operation,
        method,
        status,
        format!("https://s3.us-west-004.backblazeb2.com/photos/{key}"),
    );
    e.id = EventId(format!("0190f0e0-0000-7000-8000-00000000000{n}"));
    e.time = UNIX_EPOCH + Duration::from_millis(T0_MS + n);
    e.bucket = Some("photos".into());
    e.key = Some(key.into());
    e.access_key_id = Some("0014a2b3c4d5e6f0000000001".into());
    e.source_ip = Some("203.0.113.7".parse().unwrap());
    e.upstream_request_id = Some(format!("up-{n}"));
    e.request_id = Some(format!("s3tap-{n}"));
    e.matched_rule = Some("uploads".into());
    e.signature_timestamp = Some("20231114T221320Z".into());
    e
}

/// PUT, multipart complete, copy, delete, delete-marker, GET.
fn fixtures() -> Vec<Event> {
    let mut put = base(0, S3Operation::PutObject, "PUT", 200, "2024/a b+c/ü.jpg");
    put.size = Some(14);
    put.content_length = Some(14);
    put.content_type = Some("image/jpeg".into());
    put.etag = Some("9b2cf535f27731c974343645a3985328".into());
    put.version_id = Some("v-put".into());

    let mut mpu = base(
        1,
        S3Operation::CompleteMultipartUpload,
        "POST",
        200,
        "big & small.bin",
    );
    mpu.size = Some(10_485_760);
    mpu.etag = Some("3858f62230ac3c915f300c664312c11f-2".into());

    let mut copy = base(2, S3Operation::CopyObject, "PUT", 200, "copies/日本.txt");
    copy.size = Some(5);
    copy.etag = Some("abc".into());

    let delete = base(3, S3Operation::DeleteObject, "DELETE", 204, "old+file.txt");

    let mut marker = base(4, S3Operation::DeleteObjects, "POST", 200, "dir/a b");
    marker.delete_marker = true;
    marker.version_id = Some("dm-1".into());

    let mut get = base(5, S3Operation::GetObject, "GET", 200, "2024/a b+c/ü.jpg");
    get.size = Some(14);
    get.signature_timestamp = None;
    get.matched_rule = None;
    get.access_key_id = None;

    vec![put, mpu, copy, delete, marker, get]
}

fn options() -> FormatOptions {
    FormatOptions {
        b2: B2Identity {
            account_id: "4a2b3c4d5e6f".into(),
            bucket_ids: HashMap::from([("photos".into(), "aea8c5bc362ae55070130333".into())]),
        },
        aws_region: "us-west-004".into(),
        ..FormatOptions::default()
    }
}

fn parse(body: &EncodedBody) -> Value {
    serde_json::from_slice(&body.body).expect("valid JSON")
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[test]
fn seed_is_the_workers_json() {
    let encoder = Encoder::new(Format::Seed, options());
    assert_eq!(Format::Seed.max_batch(), 1);
    let events = fixtures();
    let put = encoder.encode_one(&events[0]);
    assert_eq!(put.content_type, "application/json");
    assert!(put.headers.is_empty());
    let v = parse(&put);
    assert_eq!(
        v,
        json!({
            "contentLength": 14,
            "contentType": "image/jpeg",
            "method": "PUT",
            "signatureTimestamp": "20231114T221320Z",
            "status": 200,
            "url": "https://s3.us-west-004.backblazeb2.com/photos/2024/a b+c/ü.jpg",
        })
    );
    // The Worker's keys in the Worker's order.
    let text = std::str::from_utf8(&put.body).unwrap();
    let order: Vec<usize> = [
        "contentLength",
        "contentType",
        "method",
        "signatureTimestamp",
        "status",
        "url",
    ]
    .iter()
    .map(|k| text.find(&format!("\"{k}\"")).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");

    // A request without those headers: nulls, as the Worker sent them.
    let v = parse(&encoder.encode_one(&events[5]));
    assert_eq!(v["contentLength"], Value::Null);
    assert_eq!(v["contentType"], Value::Null);
    assert_eq!(v["signatureTimestamp"], Value::Null);
    assert_eq!(v["status"], json!(200));
    assert_eq!(v["method"], json!("GET"));

    // One event per message.
    assert_eq!(encoder.encode_batches(&events).len(), events.len());
}

#[test]
fn b2_events_field_by_field() {
    let encoder = Encoder::new(Format::B2, options());
    let events = fixtures();
    let body = encoder.encode_batch(&events).unwrap();
    assert_eq!(body.content_type, "application/json");
    let v = parse(&body);
    assert_eq!(keys(&v), ["events"]);
    let list = v["events"].as_array().unwrap();
    assert_eq!(list.len(), events.len());
    let expected_types = [
        "b2:ObjectCreated:Upload",
        "b2:ObjectCreated:MultipartUpload",
        "b2:ObjectCreated:Copy",
        "b2:ObjectDeleted:Delete",
        "b2:HideMarkerCreated:Hide",
        "s3tap:ObjectAccessed:Get",
    ];
    for (i, (item, event)) in list.iter().zip(&events).enumerate() {
        assert_eq!(item["accountId"], json!("4a2b3c4d5e6f"));
        assert_eq!(item["bucketId"], json!("aea8c5bc362ae55070130333"));
        assert_eq!(item["bucketName"], json!("photos"));
        assert_eq!(item["eventId"], json!(event.id.as_str()));
        assert!(item["eventTimestamp"].is_u64());
        assert_eq!(item["eventTimestamp"], json!(T0_MS + i as u64));
        assert_eq!(item["eventType"], json!(expected_types[i]));
        assert!(item["eventVersion"].is_u64());
        assert_eq!(item["eventVersion"], json!(1));
        assert_eq!(
            item["matchedRuleName"],
            json!(event.matched_rule.clone().unwrap_or_default())
        );
        // objectName is the key as is: no URL encoding in B2 payloads.
        assert_eq!(item["objectName"], json!(event.key.as_deref().unwrap()));
        match event.size {
            Some(size) => assert_eq!(item["objectSize"], json!(size)),
            None => assert!(item.get("objectSize").is_none()),
        }
        match &event.version_id {
            Some(id) => assert_eq!(item["objectVersionId"], json!(id)),
            None => assert!(item.get("objectVersionId").is_none()),
        }
        let mut allowed = vec![
            "accountId",
            "bucketId",
            "bucketName",
            "eventId",
            "eventTimestamp",
            "eventType",
            "eventVersion",
            "matchedRuleName",
            "objectName",
        ];
        if event.size.is_some() {
            allowed.push("objectSize");
        }
        if event.version_id.is_some() {
            allowed.push("objectVersionId");
        }
        allowed.sort_unstable();
        assert_eq!(keys(item), allowed);
    }
}

#[test]
fn b2_unconfigured_bucket_id_is_the_bucket_name() {
    let mut event = fixtures().remove(0);
    event.bucket = Some("other-bucket".into());
    let v = parse(&Encoder::new(Format::B2, options()).encode_one(&event));
    assert_eq!(v["events"][0]["bucketId"], json!("other-bucket"));
}

#[test]
fn b2_batches_split_at_fifty() {
    let encoder = Encoder::new(Format::B2, options());
    assert_eq!(Format::B2.max_batch(), 50);
    let one = fixtures().remove(0);
    let events: Vec<Event> = (0..120)
        .map(|i| {
            let mut e = one.clone();
            e.id = EventId(format!("id-{i}"));
            e
        })
        .collect();
    let bodies = encoder.encode_batches(&events);
    let sizes: Vec<usize> = bodies
        .iter()
        .map(|b| parse(b)["events"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [50, 50, 20]);
    // Order kept across messages.
    let ids: Vec<String> = bodies
        .iter()
        .flat_map(|b| {
            parse(b)["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["eventId"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: Vec<String> = (0..120).map(|i| format!("id-{i}")).collect();
    assert_eq!(ids, expected);
}

fn check_s3_record(r: &Value, event: &Event, name: &str, key: &str) {
    assert_eq!(
        keys(r),
        [
            "awsRegion",
            "eventName",
            "eventSource",
            "eventTime",
            "eventVersion",
            "requestParameters",
            "responseElements",
            "s3",
            "userIdentity"
        ]
    );
    assert_eq!(r["eventVersion"], json!("2.1"));
    assert_eq!(r["eventSource"], json!("aws:s3"));
    assert_eq!(r["awsRegion"], json!("us-west-004"));
    let ms = event.time_millis();
    let expected_time = format!("2023-11-14T22:13:20.{:03}Z", ms % 1000);
    assert_eq!(r["eventTime"], json!(expected_time));
    assert_eq!(r["eventName"], json!(name));
    assert_eq!(
        r["userIdentity"],
        json!({"principalId": event.access_key_id.as_deref().unwrap_or("anonymous")})
    );
    assert_eq!(
        r["requestParameters"],
        json!({"sourceIPAddress": "203.0.113.7"})
    );
    assert_eq!(
        r["responseElements"],
        json!({
            "x-amz-request-id": event.upstream_request_id.as_deref().unwrap(),
            // The event id: unique per event, which CloudEvents' id needs.
            "x-amz-id-2": event.id.as_str(),
        })
    );
    let s3 = &r["s3"];
    assert_eq!(
        keys(s3),
        ["bucket", "configurationId", "object", "s3SchemaVersion"]
    );
    assert_eq!(s3["s3SchemaVersion"], json!("1.0"));
    assert_eq!(
        s3["configurationId"],
        json!(event.matched_rule.clone().unwrap_or_default())
    );
    assert_eq!(
        s3["bucket"],
        json!({
            "name": "photos",
            // Defaults to the B2 account id when no owner id is configured.
            "ownerIdentity": {"principalId": "4a2b3c4d5e6f"},
            "arn": "arn:aws:s3:::photos",
        })
    );
    let object = &s3["object"];
    assert_eq!(object["key"], json!(key));
    match event.size {
        Some(size) => assert_eq!(object["size"], json!(size)),
        None => assert!(object.get("size").is_none()),
    }
    match &event.etag {
        Some(etag) => assert_eq!(object["eTag"], json!(etag)),
        None => assert!(object.get("eTag").is_none()),
    }
    // versionId is always there, null when the bucket is not versioned.
    assert_eq!(
        object["versionId"],
        event
            .version_id
            .as_deref()
            .map_or(Value::Null, |v| json!(v))
    );
    let sequencer = object["sequencer"].as_str().unwrap();
    assert_eq!(sequencer.len(), 20);
    assert!(sequencer
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
}

#[test]
fn s3_records_field_by_field() {
    let encoder = Encoder::new(Format::S3, options());
    assert_eq!(Format::S3.max_batch(), 1);
    let events = fixtures();
    let expected = [
        ("ObjectCreated:Put", "2024/a+b%2Bc/%C3%BC.jpg"),
        ("ObjectCreated:CompleteMultipartUpload", "big+%26+small.bin"),
        ("ObjectCreated:Copy", "copies/%E6%97%A5%E6%9C%AC.txt"),
        ("ObjectRemoved:Delete", "old%2Bfile.txt"),
        ("ObjectRemoved:DeleteMarkerCreated", "dir/a+b"),
        ("ObjectAccessed:Get", "2024/a+b%2Bc/%C3%BC.jpg"),
    ];
    let bodies = encoder.encode_batches(&events);
    assert_eq!(bodies.len(), events.len());
    for ((body, event), (name, key)) in bodies.iter().zip(&events).zip(expected) {
        assert_eq!(body.content_type, "application/json");
        let v = parse(body);
        assert_eq!(keys(&v), ["Records"]);
        let records = v["Records"].as_array().unwrap();
        assert_eq!(records.len(), 1);
        check_s3_record(&records[0], event, name, key);
    }
}

#[test]
fn s3_sequencer_grows_with_time_and_is_stable() {
    let events = fixtures();
    let seq = |e: &Event| s3tap::notify::format::s3::sequencer(e);
    // Same key, later event: greater sequencer.
    let (put, get) = (&events[0], &events[5]);
    assert!(seq(get) > seq(put));
    // Redelivery of the same event: the same sequencer.
    assert_eq!(seq(put), seq(&put.clone()));
    let mut later = put.clone();
    later.time += Duration::from_nanos(1);
    assert!(seq(&later) > seq(put));
}

/// The CloudEvents adapter for AWS S3 (`cloudevents/spec`,
/// `cloudevents/adapters/aws-s3.md`), applied to the fixtures' records;
/// tests/notify_schema.rs checks every attribute against the adapter's table.
fn check_cloudevent(v: &Value, event: &Event, (name, key): (&str, &str)) {
    for attr in ["id", "source", "specversion", "type"] {
        assert!(v[attr].is_string(), "{attr} missing in {v}");
    }
    assert_eq!(v["specversion"], json!("1.0"));
    assert_eq!(
        v["id"],
        json!(format!(
            "{}.{}",
            event.upstream_request_id.as_deref().unwrap(),
            event.id
        ))
    );
    assert_eq!(v["source"], json!("aws:s3.us-west-004.photos"));
    assert_eq!(v["type"], json!(format!("com.amazonaws.s3.{name}")));
    assert_eq!(v["subject"], json!(key));
    let ms = event.time_millis();
    assert_eq!(
        v["time"],
        json!(format!("2023-11-14T22:13:20.{:03}Z", ms % 1000))
    );
    assert_eq!(v["datacontenttype"], json!("application/json"));
    assert_eq!(
        keys(v),
        [
            "data",
            "datacontenttype",
            "id",
            "source",
            "specversion",
            "subject",
            "time",
            "type"
        ]
    );
    // data is the S3 record.
    check_s3_record(&v["data"], event, name, key);
}

const CE_NAMES: [(&str, &str); 6] = [
    ("ObjectCreated:Put", "2024/a+b%2Bc/%C3%BC.jpg"),
    ("ObjectCreated:CompleteMultipartUpload", "big+%26+small.bin"),
    ("ObjectCreated:Copy", "copies/%E6%97%A5%E6%9C%AC.txt"),
    ("ObjectRemoved:Delete", "old%2Bfile.txt"),
    ("ObjectRemoved:DeleteMarkerCreated", "dir/a+b"),
    ("ObjectAccessed:Get", "2024/a+b%2Bc/%C3%BC.jpg"),
];

#[test]
fn cloudevents_structured() {
    let format = Format::CloudEvents {
        mode: CloudEventsMode::Structured,
    };
    assert_eq!(format.max_batch(), 1);
    let encoder = Encoder::new(format, options());
    for (event, kind) in fixtures().iter().zip(CE_NAMES) {
        let body = encoder.encode_one(event);
        assert_eq!(body.content_type, "application/cloudevents+json");
        assert!(body.headers.is_empty());
        check_cloudevent(&parse(&body), event, kind);
    }
}

#[test]
fn cloudevents_batch() {
    let format = Format::CloudEvents {
        mode: CloudEventsMode::Batch,
    };
    let encoder = Encoder::new(format, options());
    let events = fixtures();
    let body = encoder.encode_batch(&events).unwrap();
    assert_eq!(body.content_type, "application/cloudevents-batch+json");
    let v = parse(&body);
    let array = v.as_array().expect("a JSON array");
    assert_eq!(array.len(), events.len());
    for ((item, event), kind) in array.iter().zip(&events).zip(CE_NAMES) {
        check_cloudevent(item, event, kind);
    }
    let many: Vec<Event> = (0..250).map(|_| events[0].clone()).collect();
    let sizes: Vec<usize> = encoder
        .encode_batches(&many)
        .iter()
        .map(|b| parse(b).as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
}

#[test]
fn cloudevents_binary_http_and_kafka() {
    let events = fixtures();
    let event = &events[0];
    for protocol in [BindingProtocol::Http, BindingProtocol::Kafka] {
        let format = Format::CloudEvents {
            mode: CloudEventsMode::Binary(protocol),
        };
        let encoder = Encoder::new(format, options());
        let body = encoder.encode_one(event);
        assert_eq!(body.content_type, "application/json");
        // The body is the data: the S3 record.
        let v = parse(&body);
        check_s3_record(&v, event, "ObjectCreated:Put", "2024/a+b%2Bc/%C3%BC.jpg");
        assert_eq!(body.headers, binary_headers(event, protocol, &options()));
    }

    let http: HashMap<String, String> = binary_headers(event, BindingProtocol::Http, &options())
        .into_iter()
        .collect();
    let id = format!("up-0.{}", event.id);
    let expected: HashMap<String, String> = [
        ("ce-id", id.as_str()),
        ("ce-source", "aws:s3.us-west-004.photos"),
        ("ce-specversion", "1.0"),
        // `:` is printable ASCII: the HTTP binding leaves it.
        ("ce-type", "com.amazonaws.s3.ObjectCreated:Put"),
        ("ce-time", "2023-11-14T22:13:20.123Z"),
        // The record's key, already URL-encoded; its `%` encoded again, as
        // the binding requires of every `%`.
        ("ce-subject", "2024/a+b%252Bc/%25C3%25BC.jpg"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(http, expected);
    // Every HTTP header value is printable ASCII, so http accepts it.
    for value in http.values() {
        http::HeaderValue::from_str(value).unwrap();
    }

    let kafka: HashMap<String, String> = binary_headers(event, BindingProtocol::Kafka, &options())
        .into_iter()
        .collect();
    assert_eq!(kafka["ce_id"], id);
    assert_eq!(kafka["ce_specversion"], "1.0");
    assert_eq!(kafka["ce_type"], "com.amazonaws.s3.ObjectCreated:Put");
    assert_eq!(kafka["ce_source"], "aws:s3.us-west-004.photos");
    assert_eq!(kafka["ce_time"], "2023-11-14T22:13:20.123Z");
    // Kafka headers are UTF-8: the record's key as it is.
    assert_eq!(kafka["ce_subject"], "2024/a+b%2Bc/%C3%BC.jpg");
    assert_eq!(kafka.len(), 6);
}

#[test]
fn cloudevents_without_a_key() {
    let mut event = Event::new(S3Operation::ListObjectsV2, "GET", 200, "not a url");
    event.bucket = Some("photos".into());
    let encoder = Encoder::new(
        Format::CloudEvents {
            mode: CloudEventsMode::Structured,
        },
        options(),
    );
    let v = parse(&encoder.encode_one(&event));
    assert_eq!(v["source"], json!("aws:s3.us-west-004.photos"));
    assert_eq!(
        v["type"],
        json!("com.amazonaws.s3.s3tap:BucketListed:ListObjectsV2")
    );
    assert!(v.get("subject").is_none());
    let headers = binary_headers(&event, BindingProtocol::Http, &options());
    assert!(headers.iter().all(|(name, _)| name != "ce-subject"));
}
