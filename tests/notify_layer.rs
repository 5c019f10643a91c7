//! NotifyLayer: events built from request and response, emitted at response
//! head or body end, one per key for DeleteObjects, never delaying the
//! response, and enriched by the inner verification and re-signing layers.
#![cfg(feature = "notify")]

mod signing;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use s3tap::credentials::{StaticCredentials, UpstreamCredentials};
use s3tap::notify::{Event, NotifyLayer, NotifyRequestBody, S3Operation};
use s3tap::resign::{ResignLayer, Upstream};
use s3tap::s3error::RequestId;
use s3tap::verified::ClientAddr;
use s3tap::verify::SigV4VerifyLayer;
use signing::*;
use tower::{ServiceBuilder, ServiceExt};

type Events = Arc<Mutex<Vec<Event>>>;
type Ready = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

fn recorder() -> (Events, NotifyLayer) {
    let events = Events::default();
    let sink = events.clone();
    (
        events,
        NotifyLayer::new(move |event: Event| sink.lock().unwrap().push(event)),
    )
}

fn respond_with(
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: &'static [u8],
) -> impl Fn(Request<NotifyRequestBody<Full<Bytes>>>) -> Ready + Clone {
    move |_request| {
        let mut response = Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        std::future::ready(Ok(response
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()))
    }
}

#[tokio::test]
async fn put_events_carry_what_request_and_response_said() {
    let (events, layer) = recorder();
    let service = ServiceBuilder::new().layer(layer).service_fn(respond_with(
        200,
        &[
            ("etag", "\"9bb58f26192e4ba00f01e2e7b136bbd8\""),
            ("x-amz-version-id", "v1"),
            ("x-amz-request-id", "UPSTREAM1"),
        ],
        b"",
    ));
    let mut request = Request::put("/photos/2024/cat%20pic.jpg")
        .header("content-length", "11")
        .header("content-type", "image/jpeg")
        .header("x-amz-date", "20240101T000000Z")
        .body(Full::new(Bytes::from_static(b"hello world")))
        .unwrap();
    request
        .extensions_mut()
        .insert(ClientAddr("192.0.2.7:5000".parse().unwrap()));
    request.extensions_mut().insert(RequestId::new("REQ42"));
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = events.lock().unwrap();
    assert_eq!(
        events.len(),
        1,
        "emitted at response head, before the body is read"
    );
    let event = &events[0];
    assert_eq!(event.operation, S3Operation::PutObject);
    assert_eq!(event.bucket.as_deref(), Some("photos"));
    assert_eq!(event.key.as_deref(), Some("2024/cat pic.jpg"));
    assert_eq!(event.size, Some(11));
    assert_eq!(event.content_length, Some(11));
    assert_eq!(event.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(
        event.etag.as_deref(),
        Some("9bb58f26192e4ba00f01e2e7b136bbd8")
    );
    assert_eq!(event.version_id.as_deref(), Some("v1"));
    assert_eq!(event.upstream_request_id.as_deref(), Some("UPSTREAM1"));
    assert_eq!(event.request_id.as_deref(), Some("REQ42"));
    assert_eq!(event.source_ip, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(
        event.signature_timestamp.as_deref(),
        Some("20240101T000000Z")
    );
    assert_eq!(event.status, 200);
    assert_eq!(event.method, "PUT");
}

#[tokio::test]
async fn body_end_events_count_bytes_and_flag_aborted_downloads() {
    let (events, layer) = recorder();
    let service = ServiceBuilder::new()
        .layer(layer.emit_on_body_end())
        .service_fn(respond_with(200, &[("content-length", "5")], b"12345"));
    let response = service
        .clone()
        .oneshot(Request::get("/b/k").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert!(
        events.lock().unwrap().is_empty(),
        "nothing before the body is sent"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"12345");
    {
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].bytes_sent, Some(5));
        assert!(!events[0].aborted);
        assert_eq!(events[0].size, Some(5));
    }
    // Dropped before the end: still reported, flagged.
    let response = service
        .oneshot(Request::get("/b/k").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    drop(response);
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[1].aborted);
    assert_eq!(events[1].bytes_sent, Some(0));
}

fn delete_result(keys: &[String]) -> Vec<u8> {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for key in keys {
        xml.push_str(&format!("<Deleted><Key>{key}</Key></Deleted>"));
    }
    xml.push_str("<Error><Key>locked</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>");
    xml.into_bytes()
}

#[tokio::test]
async fn delete_objects_yields_one_event_per_deleted_key_while_streaming() {
    let keys: Vec<String> = (0..100).map(|i| format!("dir/object-{i:03}.txt")).collect();
    let document = delete_result(&keys);
    for split in [1, 13, 4096] {
        let (events, layer) = recorder();
        let pieces: Vec<Result<Frame<Bytes>, Infallible>> = document
            .chunks(split)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = Arc::new(Mutex::new(Some(pieces)));
        let service = ServiceBuilder::new().layer(layer).service_fn(
            move |_request: Request<NotifyRequestBody<Full<Bytes>>>| {
                let pieces = body.lock().unwrap().take().unwrap();
                async move {
                    Ok::<_, Infallible>(Response::new(StreamBody::new(futures_util::stream::iter(
                        pieces,
                    ))))
                }
            },
        );
        let response = service
            .oneshot(
                Request::post("/bucket?delete")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let mut body = response.into_body();
        let mut seen_while_streaming = 0;
        while let Some(frame) = body.frame().await {
            frame.unwrap();
            seen_while_streaming = seen_while_streaming.max(events.lock().unwrap().len());
        }
        let events = events.lock().unwrap();
        let got: Vec<&str> = events.iter().map(|e| e.key.as_deref().unwrap()).collect();
        assert_eq!(
            got,
            keys.iter().map(String::as_str).collect::<Vec<_>>(),
            "split {split}"
        );
        assert!(events
            .iter()
            .all(|e| e.operation == S3Operation::DeleteObject
                && e.bucket.as_deref() == Some("bucket")));
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), 100, "every event has its own id");
        assert_eq!(seen_while_streaming, 100);
    }
}

#[tokio::test]
async fn inner_layers_add_the_key_id_and_upstream_url() {
    let (events, layer) = recorder();
    let upstream = tower::service_fn(|request: Request<_>| async move {
        let _ = BodyExt::collect(request.into_body()).await;
        Ok::<_, Infallible>(
            Response::builder()
                .status(200)
                .header("etag", "\"abc\"")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    });
    let service = ServiceBuilder::new()
        .layer(layer)
        .layer(
            SigV4VerifyLayer::new(StaticCredentials::new().with_key(ACCESS_KEY, SECRET))
                .clock(fixed_time)
                .publish_chunk_digests(true),
        )
        .layer(
            ResignLayer::new(Upstream::parse("https://s3.us-west-004.backblazeb2.com").unwrap())
                .sign_with(UpstreamCredentials::new("UP", "upsecret"))
                .clock(fixed_time),
        )
        .service(upstream);
    let upload = signed_chunked_upload(
        "/bucket/big.bin?x-id=PutObject",
        &vec![7u8; 100_000],
        65_536,
        true,
    );
    let (parts, _) = upload.request.into_parts();
    let response = service
        .oneshot(Request::from_parts(
            parts,
            Full::new(Bytes::from(upload.body)),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = events.lock().unwrap();
    let event = &events[0];
    assert_eq!(event.access_key_id.as_deref(), Some(ACCESS_KEY));
    assert_eq!(
        event.url,
        "https://s3.us-west-004.backblazeb2.com/bucket/big.bin?x-id=PutObject"
    );
    assert_eq!(
        event.size,
        Some(100_000),
        "the decoded size of an aws-chunked upload"
    );
    assert!(event.signature_timestamp.is_some());
}

#[tokio::test]
async fn rejected_requests_are_events_too() {
    let (events, layer) = recorder();
    let service = ServiceBuilder::new()
        .layer(layer)
        .layer(SigV4VerifyLayer::new(
            StaticCredentials::new().with_key(ACCESS_KEY, SECRET),
        ))
        .service_fn(|_request: Request<_>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
    let response = service
        .oneshot(Request::put("/b/k").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let events = events.lock().unwrap();
    assert_eq!(events[0].status, 403);
    assert!(events[0].access_key_id.is_none());
}
