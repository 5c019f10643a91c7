//! Every way a webhook should be refused is refused, with the right status
//! and JSON, and the inner service is never called.
#![cfg(feature = "webhook")]

mod webhook_support;

use std::time::Duration;

use http::{HeaderValue, Request, StatusCode};
use http_body_util::Full;
use s3tap::webhook::{StandardWebhooks, VerifyWebhookLayer, B2};
use webhook_support::*;

const NOW: u64 = 1_700_000_000;
const BODY: &str = r#"{"events":[{"eventId":"e1"}]}"#;
const SECRET: &str = "test-secret-0123456789abcdefghij";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A correctly signed message for one scheme.
struct Signed {
    scheme: &'static str,
    layer: VerifyWebhookLayer,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Signed {
    fn request(&self) -> Request<Full<bytes::Bytes>> {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        request(&headers, self.body.clone())
    }
}

fn signed_at(timestamp: u64) -> Vec<Signed> {
    let ts = timestamp.to_string();
    let body = BODY.as_bytes().to_vec();
    let clock = move || at(NOW);
    vec![
        Signed {
            scheme: "b2",
            layer: VerifyWebhookLayer::b2(SECRET).clock(clock),
            headers: vec![(
                "x-bz-event-notification-signature",
                b2_header(SECRET, &body),
            )],
            body: body.clone(),
        },
        Signed {
            scheme: "frameio",
            layer: VerifyWebhookLayer::frameio(SECRET).clock(clock),
            headers: vec![
                ("x-frameio-request-timestamp", ts.clone()),
                ("x-frameio-signature", frameio_header(SECRET, &ts, &body)),
            ],
            body: body.clone(),
        },
        Signed {
            scheme: "standard",
            layer: VerifyWebhookLayer::standard_webhooks(WHSEC)
                .unwrap()
                .clock(clock),
            headers: vec![
                ("webhook-id", "msg_2aBcD".to_owned()),
                ("webhook-timestamp", ts.clone()),
                (
                    "webhook-signature",
                    standard_header(WHSEC, "msg_2aBcD", &ts, &body),
                ),
            ],
            body: body.clone(),
        },
        Signed {
            scheme: "github",
            layer: VerifyWebhookLayer::github(SECRET).clock(clock),
            headers: vec![("x-hub-signature-256", github_header(SECRET, &body))],
            body: body.clone(),
        },
        Signed {
            scheme: "stripe",
            layer: VerifyWebhookLayer::stripe(SECRET).clock(clock),
            headers: vec![("stripe-signature", stripe_header(SECRET, &ts, &body))],
            body,
        },
    ]
}

fn assert_refused(outcome: &Outcome, context: &str) {
    assert!(
        outcome.status == StatusCode::UNAUTHORIZED || outcome.status == StatusCode::FORBIDDEN,
        "{context}: got {} {:?}",
        outcome.status,
        outcome.body
    );
    assert_eq!(
        outcome.inner_calls, 0,
        "{context}: the inner service was called"
    );
    assert_eq!(
        outcome.headers["content-type"], "application/json",
        "{context}"
    );
    outcome.error_code();
}

#[tokio::test]
async fn the_untouched_messages_are_accepted() {
    for signed in signed_at(NOW) {
        let outcome = send(&signed.layer, signed.request()).await;
        assert_eq!(
            outcome.status,
            StatusCode::OK,
            "{}: {:?}",
            signed.scheme,
            outcome.body
        );
        assert_eq!(outcome.inner_calls, 1);
    }
}

#[tokio::test]
async fn every_single_bit_flip_in_body_or_headers_is_refused() {
    for signed in signed_at(NOW) {
        for position in 0..signed.body.len() {
            let mut tampered = signed.request();
            let mut body = signed.body.clone();
            body[position] ^= 0x01;
            *tampered.body_mut() = Full::new(body.into());
            let outcome = send(&signed.layer, tampered).await;
            assert_refused(&outcome, &format!("{} body byte {position}", signed.scheme));
        }
        for (header_index, (name, value)) in signed.headers.iter().enumerate() {
            for position in 0..value.len() {
                let mut bytes = value.as_bytes().to_vec();
                // Bit 0 rather than bit 5: flipping bit 5 turns a lowercase
                // hex digit into its uppercase twin, the same signature.
                bytes[position] ^= 0x01;
                let Ok(flipped) = HeaderValue::from_bytes(&bytes) else {
                    continue; // not sendable over HTTP at all
                };
                let mut tampered = signed.request();
                tampered.headers_mut().insert(*name, flipped);
                let outcome = send(&signed.layer, tampered).await;
                assert_refused(
                    &outcome,
                    &format!(
                        "{} header {header_index} {name} byte {position}",
                        signed.scheme
                    ),
                );
            }
        }
    }
}

#[tokio::test]
async fn a_missing_header_is_refused_with_401() {
    for signed in signed_at(NOW) {
        for (name, _) in &signed.headers {
            let mut request = signed.request();
            request.headers_mut().remove(*name);
            let outcome = send(&signed.layer, request).await;
            assert_eq!(
                outcome.status,
                StatusCode::UNAUTHORIZED,
                "{} without {name}",
                signed.scheme
            );
            assert_eq!(outcome.error_code(), "missing_header");
            assert_eq!(outcome.inner_calls, 0);
        }
    }
}

#[tokio::test]
async fn a_wrong_secret_is_an_invalid_signature() {
    let body = BODY.as_bytes();
    let layer = VerifyWebhookLayer::b2(SECRET);
    let forged = b2_header("another-secret", body);
    let outcome = send(
        &layer,
        request(
            &[("x-bz-event-notification-signature", &forged)],
            body.to_vec(),
        ),
    )
    .await;
    assert_eq!(outcome.status, StatusCode::UNAUTHORIZED);
    assert_eq!(outcome.error_code(), "invalid_signature");
    assert_eq!(outcome.inner_calls, 0);
}

#[tokio::test]
async fn stale_and_future_timestamps_are_forbidden_without_reading_the_body() {
    for (offset, code) in [(-301i64, "stale_timestamp"), (301, "future_timestamp")] {
        let timestamp = NOW.checked_add_signed(offset).unwrap();
        for signed in signed_at(timestamp) {
            if matches!(signed.scheme, "b2" | "github") {
                continue; // they sign no timestamp
            }
            let (body, polled) = CountingBody::new(64, 16);
            let (parts, _) = signed.request().into_parts();
            let outcome = send(&signed.layer, Request::from_parts(parts, body)).await;
            assert_eq!(
                outcome.status,
                StatusCode::FORBIDDEN,
                "{} at {offset:+}",
                signed.scheme
            );
            assert_eq!(outcome.error_code(), code);
            assert_eq!(outcome.inner_calls, 0);
            assert_eq!(
                polled.load(std::sync::atomic::Ordering::SeqCst),
                0,
                "the body was read"
            );
        }
    }
}

#[tokio::test]
async fn timestamps_exactly_at_the_tolerance_are_accepted() {
    for offset in [-300i64, 300] {
        for signed in signed_at(NOW.checked_add_signed(offset).unwrap()) {
            let outcome = send(&signed.layer, signed.request()).await;
            assert_eq!(
                outcome.status,
                StatusCode::OK,
                "{} at {offset:+}",
                signed.scheme
            );
        }
    }
}

#[tokio::test]
async fn the_tolerance_is_configurable() {
    let ts = (NOW - 100).to_string();
    let body = BODY.as_bytes();
    let headers = [
        ("x-frameio-request-timestamp", ts.clone()),
        ("x-frameio-signature", frameio_header(SECRET, &ts, body)),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let strict = VerifyWebhookLayer::frameio(SECRET)
        .tolerance(Duration::from_secs(60))
        .clock(|| at(NOW));
    let outcome = send(&strict, request(&headers, body.to_vec())).await;
    assert_eq!(outcome.status, StatusCode::FORBIDDEN);
    assert_eq!(outcome.error_code(), "stale_timestamp");
}

#[tokio::test]
async fn a_non_numeric_frameio_timestamp_is_refused() {
    let body = BODY.as_bytes();
    for ts in [
        "1700000000.5",
        "-1700000000",
        "+1700000000",
        "1.7e9",
        "soon",
        " 1700000000",
    ] {
        let headers = [
            ("x-frameio-request-timestamp", ts.to_owned()),
            ("x-frameio-signature", frameio_header(SECRET, ts, body)),
        ];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let layer = VerifyWebhookLayer::frameio(SECRET).clock(|| at(NOW));
        let outcome = send(&layer, request(&headers, body.to_vec())).await;
        assert_eq!(outcome.status, StatusCode::UNAUTHORIZED, "{ts:?}");
        assert_eq!(outcome.error_code(), "malformed_header", "{ts:?}");
        assert_eq!(outcome.inner_calls, 0);
    }
}

#[tokio::test]
async fn the_replay_cache_passes_b2_resends_on_as_redeliveries() {
    // B2 signs no timestamp and retries identical bodies: a resend is a
    // retry, handed to the handler (marked `Redelivery`, checked in
    // tests/notify_operations.rs), never a 401.
    let clock = ManualClock::starting_at(NOW);
    let layer = VerifyWebhookLayer::b2(SECRET)
        .replay_cache(100)
        .clock(clock.reader());
    let body = BODY.as_bytes();
    let signature = b2_header(SECRET, body);
    let signed = || {
        request(
            &[("x-bz-event-notification-signature", &signature)],
            body.to_vec(),
        )
    };

    assert_eq!(send(&layer, signed()).await.status, StatusCode::OK);
    let resend = send(&layer, signed()).await;
    assert_eq!(resend.status, StatusCode::OK);
    assert_eq!(resend.inner_calls, 1);
    assert_eq!(send(&layer.clone(), signed()).await.status, StatusCode::OK);
    clock.set(NOW + 600);
    assert_eq!(send(&layer, signed()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn standard_webhooks_replays_are_recognised_by_id_even_when_re_signed() {
    let clock = ManualClock::starting_at(NOW);
    let layer = VerifyWebhookLayer::standard_webhooks(WHSEC)
        .unwrap()
        .replay_cache(100)
        .clock(clock.reader());
    let body = BODY.as_bytes();
    let send_at = |ts: u64| {
        let ts = ts.to_string();
        let signature = standard_header(WHSEC, "msg_same", &ts, body);
        request(
            &[
                ("webhook-id", "msg_same"),
                ("webhook-timestamp", &ts),
                ("webhook-signature", &signature),
            ],
            body.to_vec(),
        )
    };
    assert_eq!(send(&layer, send_at(NOW)).await.status, StatusCode::OK);
    clock.set(NOW + 10);
    let outcome = send(&layer, send_at(NOW + 10)).await;
    assert_eq!(outcome.error_code(), "replayed");

    // A forged message cannot burn an id: only verified messages enter the cache.
    let mut forged = send_at(NOW + 10);
    forged
        .headers_mut()
        .insert("webhook-id", HeaderValue::from_static("msg_new"));
    assert_eq!(send(&layer, forged).await.error_code(), "invalid_signature");
    let ts = (NOW + 10).to_string();
    let signature = standard_header(WHSEC, "msg_new", &ts, body);
    let genuine = request(
        &[
            ("webhook-id", "msg_new"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &signature),
        ],
        body.to_vec(),
    );
    assert_eq!(send(&layer, genuine).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rotated_secrets_and_signature_lists_are_accepted() {
    let body = BODY.as_bytes();
    let layer = VerifyWebhookLayer::new(B2::new("new-secret").or_secret("old-secret"));
    for header in [
        b2_header("old-secret", body),
        format!(
            "{}, {}",
            b2_header("unknown", body),
            b2_header("new-secret", body)
        ),
    ] {
        let outcome = send(
            &layer,
            request(
                &[("x-bz-event-notification-signature", &header)],
                body.to_vec(),
            ),
        )
        .await;
        assert_eq!(outcome.status, StatusCode::OK, "{header}");
    }

    let old = "whsec_c2Vjb25kLXNlY3JldC1rZXktYnl0ZXM=";
    let layer = VerifyWebhookLayer::new(
        StandardWebhooks::new(WHSEC)
            .unwrap()
            .or_secret(old)
            .unwrap(),
    )
    .clock(|| at(NOW));
    let ts = NOW.to_string();
    let signature = standard_header(old, "msg_1", &ts, body);
    let outcome = send(
        &layer,
        request(
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &ts),
                ("webhook-signature", &signature),
            ],
            body.to_vec(),
        ),
    )
    .await;
    assert_eq!(outcome.status, StatusCode::OK);
}

#[test]
fn debug_output_never_shows_a_secret() {
    let layers = [
        format!(
            "{:?}",
            VerifyWebhookLayer::b2("b2-SECRET-VALUE").replay_cache(5)
        ),
        format!(
            "{:?}",
            VerifyWebhookLayer::stripe("whsec_STRIPE-SECRET-VALUE")
        ),
        format!(
            "{:?}",
            VerifyWebhookLayer::standard_webhooks(WHSEC).unwrap()
        ),
    ];
    for printed in layers {
        assert!(
            !printed.contains("SECRET-VALUE") && !printed.contains("MfKQ9r8"),
            "{printed}"
        );
        assert!(printed.contains("redacted"), "{printed}");
    }
    assert!(VerifyWebhookLayer::standard_webhooks("whsec_***").is_err());
}

/// A sender-specific format: `x-signature: <hex HMAC of body>`, with the
/// message id in `x-message-id`.
#[derive(Debug)]
struct PlainHex(s3tap::webhook::Secret);

impl s3tap::webhook::WebhookScheme for PlainHex {
    fn check_headers(
        &self,
        request: &s3tap::webhook::WebhookContext<'_>,
    ) -> Result<(), s3tap::webhook::WebhookError> {
        request.header("x-signature").map(drop)
    }

    fn verify(
        &self,
        request: &s3tap::webhook::WebhookContext<'_>,
        body: &[u8],
    ) -> Result<Option<s3tap::webhook::ReplayId>, s3tap::webhook::WebhookError> {
        let claimed =
            request.decode_hex_signature("x-signature", request.header("x-signature")?)?;
        let mac = s3tap::crypto::hmac_sha256(self.0.expose(), body);
        if !s3tap::crypto::constant_time_eq(&mac, &claimed) {
            return Err(s3tap::webhook::WebhookError::InvalidSignature);
        }
        Ok(Some(request.header("x-message-id")?.into()))
    }
}

#[tokio::test]
async fn a_custom_scheme_plugs_in_with_the_same_guarantees() {
    let layer = VerifyWebhookLayer::new(PlainHex(SECRET.into())).replay_cache(10);
    let body = BODY.as_bytes();
    let signature = hex_mac(SECRET.as_bytes(), body);
    let signed = || {
        request(
            &[("x-signature", signature.as_str()), ("x-message-id", "m-1")],
            body.to_vec(),
        )
    };
    assert_eq!(send(&layer, signed()).await.status, StatusCode::OK);
    assert_eq!(send(&layer, signed()).await.error_code(), "replayed");
    let outcome = send(&layer, request(&[("x-message-id", "m-2")], body.to_vec())).await;
    assert_eq!(outcome.error_code(), "missing_header");
    let outcome = send(
        &layer,
        request(
            &[("x-signature", "zz"), ("x-message-id", "m-3")],
            body.to_vec(),
        ),
    )
    .await;
    assert_eq!(outcome.error_code(), "malformed_header");
    assert_eq!(outcome.inner_calls, 0);
}
