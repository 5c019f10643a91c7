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
