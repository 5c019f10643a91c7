//! Known-answer tests: signatures computed outside this crate (Python's
//! `hmac`, the Standard Webhooks and GitHub published vectors) must verify.
#![cfg(feature = "webhook")]

mod webhook_support;

use http::StatusCode;
use s3tap::webhook::VerifyWebhookLayer;
use serde_json::Value;
use webhook_support::{at, request, send};

fn vector(name: &str) -> Value {
    let path = format!("{}/tests/data/webhook/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("valid JSON")
}

fn text<'a>(vector: &'a Value, field: &str) -> &'a str {
    vector[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string"))
}

fn unix(vector: &Value) -> u64 {
    text(vector, "timestamp").parse().unwrap()
}

#[tokio::test]
async fn b2_vectors_from_python_verify_including_the_test_event() {
    let vector = vector("b2.json");
    let layer = VerifyWebhookLayer::b2(text(&vector, "secret"));
    for case in vector["cases"].as_array().unwrap() {
        let body = text(case, "body").to_owned();
        let signature = text(case, "signature_header");
        let outcome = send(
            &layer,
            request(
                &[("x-bz-event-notification-signature", signature)],
                body.clone(),
            ),
        )
        .await;
        assert_eq!(outcome.status, StatusCode::OK, "{}", case["name"]);
        assert_eq!(
            outcome.body,
            body.as_bytes(),
            "the inner service gets the raw body"
        );
        assert_eq!(outcome.inner_calls, 1);
    }
}

#[tokio::test]
async fn frameio_vector_from_python_verifies() {
    let vector = vector("frameio.json");
    let now = unix(&vector);
    let layer = VerifyWebhookLayer::frameio(text(&vector, "secret")).clock(move || at(now));
    let headers = [
        ("x-frameio-request-timestamp", text(&vector, "timestamp")),
        ("x-frameio-signature", text(&vector, "signature_header")),
    ];
    let outcome = send(&layer, request(&headers, text(&vector, "body").to_owned())).await;
    assert_eq!(outcome.status, StatusCode::OK, "{:?}", outcome.body);
    assert_eq!(outcome.inner_calls, 1);
}

#[tokio::test]
async fn stripe_vector_from_python_verifies() {
    let vector = vector("stripe.json");
    let now = unix(&vector);
    let layer = VerifyWebhookLayer::stripe(text(&vector, "secret")).clock(move || at(now));
    let headers = [("stripe-signature", text(&vector, "signature_header"))];
    let outcome = send(&layer, request(&headers, text(&vector, "body").to_owned())).await;
    assert_eq!(outcome.status, StatusCode::OK, "{:?}", outcome.body);
}

#[tokio::test]
async fn standard_webhooks_published_vector_verifies() {
    let vector = vector("standard_webhooks.json");
    let now = unix(&vector);
    let layer = VerifyWebhookLayer::standard_webhooks(text(&vector, "secret"))
        .unwrap()
        .clock(move || at(now));
    let headers = [
        ("webhook-id", text(&vector, "id")),
        ("webhook-timestamp", text(&vector, "timestamp")),
        ("webhook-signature", text(&vector, "signature_header")),
    ];
    let outcome = send(&layer, request(&headers, text(&vector, "body").to_owned())).await;
    assert_eq!(outcome.status, StatusCode::OK, "{:?}", outcome.body);

    // Among unrelated entries (another version, a wrong v1) the right one is found.
    let crowded = format!(
        "v1a,AAAA v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {}",
        text(&vector, "signature_header")
    );
    let headers = [
        headers[0],
        headers[1],
        ("webhook-signature", crowded.as_str()),
    ];
    let outcome = send(&layer, request(&headers, text(&vector, "body").to_owned())).await;
    assert_eq!(outcome.status, StatusCode::OK, "{:?}", outcome.body);
}

#[tokio::test]
async fn github_documented_example_verifies() {
    let vector = vector("github.json");
    let layer = VerifyWebhookLayer::github(text(&vector, "secret"));
    let headers = [("x-hub-signature-256", text(&vector, "signature_header"))];
    let outcome = send(&layer, request(&headers, text(&vector, "body").to_owned())).await;
    assert_eq!(outcome.status, StatusCode::OK, "{:?}", outcome.body);
    assert_eq!(outcome.body, "Hello, World!");
}

/// The signing side of the one implementation per scheme (what the webhook
/// sink sends) makes the published / independently computed signatures,
/// and what it signs the verifying side accepts.
#[tokio::test]
async fn signing_reproduces_the_vectors_and_verifies() {
    use s3tap::webhook::{StandardWebhooks, B2};

    let vector_of = vector;
    let vector = vector_of("standard_webhooks.json");
    let scheme = StandardWebhooks::new(text(&vector, "secret")).unwrap();
    let body = text(&vector, "body");
    let headers = scheme.sign(text(&vector, "id"), unix(&vector), body.as_bytes());
    assert_eq!(headers[0].1, text(&vector, "id"));
    assert_eq!(headers[1].1, text(&vector, "timestamp"));
    assert_eq!(headers[2].1, text(&vector, "signature_header"));
    // Signed here, verified by the layer (another id, another time).
    let now = 1_700_000_000;
    let signed = scheme.sign("msg_roundtrip", now, b"{\"n\":1}");
    let pairs: Vec<(&str, &str)> = signed
        .iter()
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
        .collect();
    let layer = VerifyWebhookLayer::standard_webhooks(text(&vector, "secret"))
        .unwrap()
        .clock(move || at(now));
    let outcome = send(&layer, request(&pairs, "{\"n\":1}".to_owned())).await;
    assert_eq!(outcome.status, StatusCode::OK, "{:?}", outcome.body);
    // A tampered body is refused: the check is not vacuous.
    let outcome = send(&layer, request(&pairs, "{\"n\":2}".to_owned())).await;
    assert_eq!(outcome.status, StatusCode::UNAUTHORIZED);

    let b2 = vector_of("b2.json");
    let scheme = B2::new(text(&b2, "secret"));
    let layer = VerifyWebhookLayer::b2(text(&b2, "secret"));
    for case in b2["cases"].as_array().unwrap() {
        let body = text(case, "body");
        let (name, value) = scheme.sign(body.as_bytes());
        assert_eq!(name, "x-bz-event-notification-signature");
        assert_eq!(value, text(case, "signature_header"), "{}", case["name"]);
        let outcome = send(
            &layer,
            request(&[(name.as_str(), value.to_str().unwrap())], body.to_owned()),
        )
        .await;
        assert_eq!(outcome.status, StatusCode::OK, "{}", case["name"]);
    }
}
