//! `PostObjectLayer` alone, in process, with forms written by hand and
//! policies signed here with plain HMAC-SHA256 (the SigV4 key derivation
//! written out, not the crate's): what the service behind it receives, and
//! the refusals of forms no SDK writes (field names in odd case, fields
//! after the file, no file, too many bytes before the file, SigV2, broken
//! multipart). Every other request passes through untouched.

#![cfg(feature = "post")]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use s3tap::credentials::StaticCredentials;
use s3tap::post::{PostBody, PostObjectLayer};
use s3tap::verified::{AuthKind, Verified};
use sha2::Sha256;
use tower::{service_fn, Layer, ServiceExt};

const KEY_ID: &str = "AKIDFORM";
const SECRET: &str = "form-secret/with+chars";
const BOUNDARY: &str = "b0undary";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The fields of a SigV4 form for `policy` (JSON), signed with `secret`.
fn signed_fields(policy: &str, secret: &str, region: &str) -> Vec<(String, String)> {
    let date = "20300101";
    let policy = base64::engine::general_purpose::STANDARD.encode(policy);
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, policy.as_bytes()));
    vec![
        ("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()),
        (
            "x-amz-credential".into(),
            format!("{KEY_ID}/{date}/{region}/s3/aws4_request"),
        ),
        ("x-amz-date".into(), format!("{date}T000000Z")),
        ("policy".into(), policy),
        ("x-amz-signature".into(), signature),
    ]
}

fn policy(conditions: &str) -> String {
    format!(
        r#"{{"expiration":"2030-01-02T00:00:00Z","conditions":[{{"bucket":"bkt"}},
        {{"x-amz-algorithm":"AWS4-HMAC-SHA256"}},["starts-with","$x-amz-credential",""],
        ["starts-with","$x-amz-date",""]{conditions}]}}"#
    )
}

/// A multipart body: `before` fields, the file (if any), `after` fields.
fn form(before: &[(String, String)], file: Option<&[u8]>, after: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in before {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    if let Some(file) = file {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n");
    }
    for (name, value) in after {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// What the form service received: method, target, headers, Verified, body.
type Seen = Arc<Mutex<Vec<(http::request::Parts, Bytes)>>>;

async fn send(request: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, String, Seen, usize) {
    send_with_suffix(request, None).await
}

/// [`send`] to a layer that knows `bucket.<suffix>` hosts.
async fn send_with_suffix(
    request: Request<Full<Bytes>>,
    suffix: Option<&str>,
) -> (StatusCode, http::HeaderMap, String, Seen, usize) {
    send_to(request, suffix, StatusCode::OK).await
}

/// [`send_with_suffix`] with the upstream answering the `PUT` with `upstream`.
async fn send_to(
    request: Request<Full<Bytes>>,
    suffix: Option<&str>,
    upstream: StatusCode,
) -> (StatusCode, http::HeaderMap, String, Seen, usize) {
    let seen: Seen = Arc::default();
    let passed = Arc::new(Mutex::new(0usize));
    let record = seen.clone();
    let form_service = service_fn(move |request: Request<PostBody>| {
        let record = record.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            record.lock().unwrap().push((parts, body));
            let body = if upstream.is_success() {
                String::new()
            } else {
                "<Error><Code>NoSuchBucket</Code></Error>".to_owned()
            };
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = upstream;
            response
                .headers_mut()
                .insert("etag", "\"0123\"".parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    });
    let count = passed.clone();
    let other = service_fn(move |_request: Request<Full<Bytes>>| {
        *count.lock().unwrap() += 1;
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    });
    let store = StaticCredentials::new().with_key(KEY_ID, SECRET);
    let mut layer = PostObjectLayer::new(store, form_service)
        .region("us-east-1")
        .clock(|| SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000));
    if let Some(suffix) = suffix {
        layer = layer.client_virtual_host_suffix(suffix);
    }
    let response = layer.layer(other).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let passed = *passed.lock().unwrap();
    (parts.status, parts.headers, body, seen, passed)
}

fn post(body: Vec<u8>) -> Request<Full<Bytes>> {
    Request::post("/bkt")
        .header("host", "proxy.test")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn code(body: &str) -> &str {
    body.split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or("")
}

#[tokio::test]
async fn a_form_in_any_case_becomes_a_verified_put_and_fields_after_the_file_are_ignored() {
    let mut fields = signed_fields(
        &policy(
            r#",["starts-with","$key","in/"],{"content-type":"text/plain"},["eq","$X-Amz-Meta-Who","me"]"#,
        ),
        SECRET,
        "us-east-1",
    );
    // Names as a hand-written form might spell them.
    fields.push(("KEY".into(), "in/${filename} x".into()));
    fields.push(("Content-Type".into(), "text/plain".into()));
    fields.push(("x-AMZ-meta-who".into(), "me".into()));
    for field in &mut fields {
        if field.0 == "x-amz-signature" {
            field.0 = "X-Amz-Signature".into();
        }
    }
    let after = [("x-amz-meta-late", "ignored"), ("key", "other/key")];
    let (status, headers, body, seen, passed) =
        send(post(form(&fields, Some(b"hello form"), &after))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(headers["etag"], "\"0123\"");
    assert_eq!(headers["location"], "http://proxy.test/bkt/in/a.txt%20x");
    assert_eq!(passed, 0);
    let seen = seen.lock().unwrap();
    let (parts, bytes) = &seen[0];
    assert_eq!(parts.method, http::Method::PUT);
    assert_eq!(parts.uri.path(), "/bkt/in/a.txt%20x");
    assert_eq!(parts.headers["content-type"], "text/plain");
    assert_eq!(parts.headers["x-amz-meta-who"], "me");
    assert_eq!(parts.headers["content-length"], "10");
    assert!(!parts.headers.contains_key("x-amz-meta-late"));
    assert_eq!(&bytes[..], b"hello form");
    let verified = parts.extensions.get::<Verified>().unwrap();
    assert_eq!(verified.auth, AuthKind::PostPolicy);
    assert_eq!(verified.access_key_id, KEY_ID);
    assert!(verified.signed_headers.contains("x-amz-meta-who"));
}

#[tokio::test]
async fn forms_no_sdk_writes_are_refused_with_s3_codes() {
    let good = || {
        let mut fields = signed_fields(
            &policy(r#",["starts-with","$key",""]"#),
            SECRET,
            "us-east-1",
        );
        fields.push(("key".into(), "k".into()));
        fields
    };
    let cases: Vec<(&str, Request<Full<Bytes>>, StatusCode, &str)> = vec![
        (
            "no file",
            post(form(&good(), None, &[])),
            StatusCode::BAD_REQUEST,
            "IncorrectNumberOfFilesInPostRequest",
        ),
        (
            "20 KB before the file",
            post(form(
                &[good(), vec![("x-ignore-pad".into(), "p".repeat(21 * 1024))]].concat(),
                Some(b"x"),
                &[],
            )),
            StatusCode::BAD_REQUEST,
            "MaxPostPreDataLengthExceeded",
        ),
        (
            "no key",
            post(form(
                &good()
                    .into_iter()
                    .filter(|(n, _)| n != "key")
                    .collect::<Vec<_>>(),
                Some(b"x"),
                &[],
            )),
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
        ),
        (
            "SigV2",
            post(form(
                &[
                    ("key".into(), "k".into()),
                    ("AWSAccessKeyId".into(), KEY_ID.into()),
                    ("policy".into(), "e30=".into()),
                    ("signature".into(), "c2ln".into()),
                ],
                Some(b"x"),
                &[],
            )),
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
        ),
        (
            "another region",
            post(form(
                &{
                    let mut f = signed_fields(
                        &policy(r#",["starts-with","$key",""]"#),
                        SECRET,
                        "eu-west-1",
                    );
                    f.push(("key".into(), "k".into()));
                    f
                },
                Some(b"x"),
                &[],
            )),
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
        ),
        (
            "wrong secret",
            post(form(
                &{
                    let mut f = signed_fields(
                        &policy(r#",["starts-with","$key",""]"#),
                        "nope",
                        "us-east-1",
                    );
                    f.push(("key".into(), "k".into()));
                    f
                },
                Some(b"x"),
                &[],
            )),
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
        ),
        (
            "policy without bucket condition",
            post(form(
                &{
                    let mut f = signed_fields(
                        r#"{"expiration":"2030-01-02T00:00:00Z","conditions":[["starts-with","$key",""]]}"#,
                        SECRET,
                        "us-east-1",
                    );
                    f.push(("key".into(), "k".into()));
                    f
                },
                Some(b"x"),
                &[],
            )),
            StatusCode::FORBIDDEN,
            "AccessDenied",
        ),
        (
            "CONDITIONS in capitals",
            post(form(
                &{
                    let mut f = signed_fields(
                        r#"{"expiration":"2030-01-02T00:00:00Z","CONDITIONS":[{"bucket":"bkt"}]}"#,
                        SECRET,
                        "us-east-1",
                    );
                    f.push(("key".into(), "k".into()));
                    f
                },
                Some(b"x"),
                &[],
            )),
            StatusCode::BAD_REQUEST,
            "InvalidPolicyDocument",
        ),
        (
            "broken multipart",
            post(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nno name")
                    .into_bytes(),
            ),
            StatusCode::BAD_REQUEST,
            "MalformedPOSTRequest",
        ),
    ];
    for (name, request, status, wanted) in cases {
        let (got, _, body, seen, passed) = send(request).await;
        assert_eq!((got, code(&body)), (status, wanted), "{name}: {body}");
        assert!(
            seen.lock().unwrap().is_empty(),
            "{name}: reached the form service"
        );
        assert_eq!(passed, 0, "{name}");
    }
}

#[tokio::test]
async fn other_requests_pass_through_untouched() {
    for request in [
        Request::get("/bkt/key")
            .body(Full::new(Bytes::new()))
            .unwrap(),
        Request::post("/bkt/key?uploads")
            .header("content-type", "multipart/form-data; boundary=x")
            .body(Full::new(Bytes::new()))
            .unwrap(),
        Request::post("/bkt")
            .header("content-type", "application/xml")
            .body(Full::new(Bytes::new()))
            .unwrap(),
        Request::post("/bkt")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=x")
            .header("content-type", "multipart/form-data; boundary=x")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    ] {
        let (status, _, _, seen, passed) = send(request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(passed, 1);
        assert!(seen.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_virtual_hosted_bucket_gets_its_put_on_the_same_host() {
    let mut fields = signed_fields(
        &policy(r#",["starts-with","$key",""]"#),
        SECRET,
        "us-east-1",
    );
    fields.push(("key".into(), "dir/k".into()));
    let request = Request::post("/")
        .header("host", "bkt.proxy.test")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Full::new(Bytes::from(form(&fields, Some(b"v"), &[]))))
        .unwrap();
    let (status, headers, body, seen, _) = send_with_suffix(request, Some("proxy.test")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(headers["location"], "http://bkt.proxy.test/dir/k");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0.uri.path(), "/dir/k");
    assert_eq!(seen[0].0.headers["host"], "bkt.proxy.test");
}

#[tokio::test]
async fn success_action_status_and_redirect_variants_and_upstream_errors() {
    let with = |extra: &[(&str, &str)]| {
        let mut conditions = String::from(r#",["starts-with","$key",""]"#);
        for (name, _) in extra {
            conditions.push_str(&format!(r#",["starts-with","${name}",""]"#));
        }
        let mut fields = signed_fields(&policy(&conditions), SECRET, "us-east-1");
        fields.push(("key".into(), "k".into()));
        for (name, value) in extra {
            fields.push((name.to_string(), value.to_string()));
        }
        post(form(&fields, Some(b"v"), &[]))
    };
    // 200 and 201 as asked; anything else is 204, as S3 answers.
    for (asked, status) in [
        ("200", StatusCode::OK),
        ("201", StatusCode::CREATED),
        ("404", StatusCode::NO_CONTENT),
        ("", StatusCode::NO_CONTENT),
    ] {
        let (got, _, body, _, _) = send(with(&[("success_action_status", asked)])).await;
        assert_eq!(got, status, "success_action_status={asked:?}: {body}");
        assert_eq!(
            body.contains("<PostResponse>"),
            status == StatusCode::CREATED
        );
    }
    // The older `redirect` field redirects too; a redirect wins over a status.
    let (got, headers, _, _, _) = send(with(&[
        ("redirect", "https://app.example/ok"),
        ("success_action_status", "201"),
    ]))
    .await;
    assert_eq!(got, StatusCode::SEE_OTHER);
    assert_eq!(
        headers["location"],
        "https://app.example/ok?bucket=bkt&key=k&etag=%220123%22"
    );
    // The upstream's refusal of the PUT reaches the client as it is.
    let (got, _, body, seen, _) = send_to(with(&[]), None, StatusCode::NOT_FOUND).await;
    assert_eq!((got, code(&body)), (StatusCode::NOT_FOUND, "NoSuchBucket"));
    assert_eq!(seen.lock().unwrap().len(), 1);
}
