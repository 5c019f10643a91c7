//! The axum example: its own route answers anyone; its S3 routes store and
//! return objects for signed requests only.
mod signing;

#[allow(dead_code)] // main is the example's, not the test's
#[path = "../examples/axum_app.rs"]
mod axum_app;

use std::time::SystemTime;

use aws_sigv4::http_request::SignableBody;
use axum::body::Body;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn signed(method: &str, path: &str, payload: &[u8], secret: &str) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:3000{path}"))
        .header("host", "127.0.0.1:3000")
        .header("content-length", payload.len())
        .body(Bytes::copy_from_slice(payload))
        .unwrap();
    signing::sign_with(
        &mut request,
        SignableBody::Bytes(payload),
        &signing::SignOptions {
            access_key: axum_app::ACCESS_KEY,
            secret,
            time: SystemTime::now(),
            ..signing::SignOptions::default()
        },
    );
    request.map(Body::from)
}

async fn text(response: http::Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn plain_routes_stay_open_and_s3_routes_need_a_signature() {
    let app = axum_app::app();

    let hello = Request::get("/api/hello").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(hello).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "hello from the app\n");

    let put = signed("PUT", "/s3/bucket/dir/a.txt", b"hello s3", axum_app::SECRET);
    let response = app.clone().oneshot(put).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let get = signed("GET", "/s3/bucket/dir/a.txt", b"", axum_app::SECRET);
    let response = app.clone().oneshot(get).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "hello s3");

    let forged = signed("GET", "/s3/bucket/dir/a.txt", b"", "not-the-secret");
    let response = app.clone().oneshot(forged).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(text(response)
        .await
        .contains("<Code>SignatureDoesNotMatch</Code>"));

    let unsigned = Request::get("/s3/bucket/dir/a.txt")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(unsigned).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}
