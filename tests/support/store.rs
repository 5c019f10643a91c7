//! `ObjectStore`: a tiny in-memory S3 sink (axum `Router`) that records what
//! real clients send: object bytes, request headers and HTTP trailers.
//!
//! It implements just what the client tests need, path-style only: PutObject,
//! multipart upload (create, upload part, complete), HeadObject, GetObject,
//! CreateBucket and a minimal ListObjectsV2. It checks no signature: put it
//! behind the layer under test.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};

/// One request as the store's handler saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query as received.
    pub uri: String,
    pub headers: HeaderMap,
    /// HTTP trailers of the body, if any arrived.
    pub trailers: Option<HeaderMap>,
    /// Body bytes as the handler received them (after any layer).
    pub body: Bytes,
}

impl RecordedRequest {
    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct State {
    objects: HashMap<(String, String), Bytes>,
    uploads: HashMap<String, Upload>,
    requests: Vec<RecordedRequest>,
    next_upload: u64,
}

struct Upload {
    bucket: String,
    key: String,
    parts: BTreeMap<u32, Bytes>,
}

/// Read side of an [`ObjectStore`]: what was stored and what was received.
#[derive(Clone, Default)]
pub struct StoreHandle {
    state: Arc<Mutex<State>>,
    calls: Arc<AtomicUsize>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// The bytes stored at `bucket/key`.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Bytes> {
        let state = self.state.lock().unwrap();
        state
            .objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
    }

    /// How many times the handler ran (every request that got past the
    /// layers, whatever it was).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Every request the handler saw, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Number of objects stored.
    pub fn object_count(&self) -> usize {
        self.state.lock().unwrap().objects.len()
    }
}

/// Constructor for the test S3 sink.
#[derive(Debug)]
pub struct ObjectStore;

impl ObjectStore {
    /// A fresh, empty store: the router to serve (behind a layer) and a
    /// handle to inspect it.
    pub fn create() -> (Router, StoreHandle) {
        let handle = StoreHandle::default();
        let h = handle.clone();
        let router = Router::new().fallback(move |req: Request| {
            let h = h.clone();
            async move { handle_request(h, req).await }
        });
        (router, handle)
    }
}

async fn handle_request(store: StoreHandle, req: Request) -> Response {
    store.calls.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let collected = match body.collect().await {
        Ok(c) => c,
        Err(e) => {
            return s3_error(
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                &format!("body error: {e}"),
            )
        }
    };
    let trailers = collected.trailers().cloned();
    let body = collected.to_bytes();
    let uri = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let record = RecordedRequest {
        method: parts.method.clone(),
        uri,
        headers: parts.headers.clone(),
        trailers: trailers.clone(),
        body: body.clone(),
    };
    store.state.lock().unwrap().requests.push(record);

    let path = percent_decode(parts.uri.path());
    let path = path.trim_start_matches('/');
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) => (b.to_owned(), k.to_owned()),
        None => (path.to_owned(), String::new()),
    };
    let query = parse_query(parts.uri.query().unwrap_or(""));
    if bucket.is_empty() {
        return s3_error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "ListBuckets is not implemented",
        );
    }

    let mut state = store.state.lock().unwrap();
    let method = parts.method;
    let checksums = checksum_headers(&parts.headers, trailers.as_ref());

    if key.is_empty() {
        return match method {
            Method::PUT => empty(StatusCode::OK),
            Method::HEAD => empty(StatusCode::OK),
            Method::GET => list_objects(&state, &bucket, &query),
            _ => s3_error(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "bucket operation",
            ),
        };
    }

    match method {
        Method::POST if query.contains_key("uploads") => {
            state.next_upload += 1;
            let upload_id = format!("upload-{}", state.next_upload);
            state.uploads.insert(
                upload_id.clone(),
                Upload {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    parts: BTreeMap::new(),
                },
            );
            xml(format!(
                "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Bucket>{}</Bucket><Key>{}</Key><UploadId>{upload_id}</UploadId>\
                 </InitiateMultipartUploadResult>",
                xml_escape(&bucket),
                xml_escape(&key)
            ))
        }
        Method::PUT if query.contains_key("uploadId") => {
            let upload_id = &query["uploadId"];
            let Some(part_number) = query.get("partNumber").and_then(|n| n.parse::<u32>().ok())
            else {
                return s3_error(StatusCode::BAD_REQUEST, "InvalidArgument", "bad partNumber");
            };
            let Some(upload) = state.uploads.get_mut(upload_id) else {
                return s3_error(StatusCode::NOT_FOUND, "NoSuchUpload", "unknown upload id");
            };
            let etag = md5_etag(&body);
            upload.parts.insert(part_number, body);
            with_checksums(etag_response(&etag), &checksums)
        }
        Method::POST if query.contains_key("uploadId") => {
            let upload_id = &query["uploadId"];
            let Some(upload) = state.uploads.remove(upload_id) else {
                return s3_error(StatusCode::NOT_FOUND, "NoSuchUpload", "unknown upload id");
            };
            if upload.bucket != bucket || upload.key != key {
                return s3_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequest",
                    "upload id of another object",
                );
            }
            let listed = listed_part_numbers(&String::from_utf8_lossy(&body));
            let numbers: Vec<u32> = if listed.is_empty() {
                upload.parts.keys().copied().collect()
            } else {
                listed
            };
            let mut data = Vec::new();
            let mut md5s = Vec::new();
            for n in &numbers {
                let Some(part) = upload.parts.get(n) else {
                    return s3_error(
                        StatusCode::BAD_REQUEST,
                        "InvalidPart",
                        &format!("part {n} was not uploaded"),
                    );
                };
                data.extend_from_slice(part);
                md5s.extend_from_slice(&Md5::digest(part));
            }
            let etag = format!("\"{}-{}\"", hex::encode(Md5::digest(&md5s)), numbers.len());
            state
                .objects
                .insert((bucket.clone(), key.clone()), Bytes::from(data));
            xml(format!(
                "<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Location>/{b}/{k}</Location><Bucket>{b}</Bucket><Key>{k}</Key>\
                 <ETag>{}</ETag></CompleteMultipartUploadResult>",
                xml_escape(&etag),
                b = xml_escape(&bucket),
                k = xml_escape(&key),
            ))
        }
        Method::DELETE if query.contains_key("uploadId") => {
            state.uploads.remove(&query["uploadId"]);
            empty(StatusCode::NO_CONTENT)
        }
        Method::PUT => {
            let etag = md5_etag(&body);
            state.objects.insert((bucket, key), body);
            with_checksums(etag_response(&etag), &checksums)
        }
        Method::GET | Method::HEAD => {
            let Some(data) = state.objects.get(&(bucket, key)) else {
                if method == Method::HEAD {
                    return empty(StatusCode::NOT_FOUND);
                }
                return s3_error(
                    StatusCode::NOT_FOUND,
                    "NoSuchKey",
                    "The specified key does not exist.",
                );
            };
            let mut resp = etag_response(&md5_etag(data));
            let headers = resp.headers_mut();
            headers.insert(
                http::header::LAST_MODIFIED,
                HeaderValue::from_static("Mon, 23 Nov 2026 00:00:00 GMT"),
            );
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("binary/octet-stream"),
            );
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(data.len()));
            if method == Method::GET {
                *resp.body_mut() = Body::from(data.clone());
            }
            resp
        }
        Method::DELETE => {
            state.objects.remove(&(bucket, key));
            empty(StatusCode::NO_CONTENT)
        }
        _ => s3_error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "object operation",
        ),
    }
}

fn list_objects(state: &State, bucket: &str, query: &HashMap<String, String>) -> Response {
    let prefix = query.get("prefix").map(String::as_str).unwrap_or("");
    let mut keys: Vec<(&String, &Bytes)> = state
        .objects
        .iter()
        .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
        .map(|((_, k), v)| (k, v))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let mut contents = String::new();
    for (key, data) in &keys {
        contents.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>2026-11-23T00:00:00.000Z</LastModified>\
             <ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            xml_escape(key),
            xml_escape(&md5_etag(data)),
            data.len()
        ));
    }
    xml(format!(
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys>\
         <IsTruncated>false</IsTruncated>{contents}</ListBucketResult>",
        xml_escape(bucket),
        xml_escape(prefix),
        keys.len()
    ))
}

/// `x-amz-checksum-*` values the client sent, in headers or trailers.
fn checksum_headers(
    headers: &HeaderMap,
    trailers: Option<&HeaderMap>,
) -> Vec<(http::HeaderName, HeaderValue)> {
    headers
        .iter()
        .chain(trailers.into_iter().flat_map(|t| t.iter()))
        .filter(|(name, _)| {
            name.as_str().starts_with("x-amz-checksum-") && name.as_str() != "x-amz-checksum-type"
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

fn with_checksums(mut resp: Response, checksums: &[(http::HeaderName, HeaderValue)]) -> Response {
    for (name, value) in checksums {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

fn md5_etag(data: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Md5::digest(data)))
}

fn etag_response(etag: &str) -> Response {
    let mut resp = empty(StatusCode::OK);
    resp.headers_mut().insert(
        http::header::ETAG,
        HeaderValue::from_str(etag).expect("hex etag"),
    );
    resp
}

fn empty(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

fn xml(body: String) -> Response {
    let mut resp = Response::new(Body::from(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"
    )));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut resp = xml(format!(
        "<Error><Code>{code}</Code><Message>{}</Message></Error>",
        xml_escape(message)
    ));
    *resp.status_mut() = status;
    resp
}

/// Part numbers in a CompleteMultipartUpload body, in the order listed.
fn listed_part_numbers(body: &str) -> Vec<u32> {
    body.split("<PartNumber>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</PartNumber>"))
        .filter_map(|(n, _)| n.trim().parse().ok())
        .collect()
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hi = (bytes[i + 1] as char).to_digit(16);
            let lo = (bytes[i + 2] as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
