//! The transfer's two ends behind one small trait, [`ObjectStore`], and its S3
//! implementation: requests signed by `ResignLayer`, sent by `UpstreamClient`.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use s3tap::body::BoxError;
use s3tap::credentials::UpstreamCredentials;
use s3tap::resign::{Resign, ResignLayer, Upstream};
use s3tap::upstream::UpstreamClient;
use tower::{Layer, ServiceExt};

/// A streamed object body.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A boxed future, so the trait can be held as `dyn ObjectStore`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// S3 answers one PUT with at most 5 GiB (B2 likewise); bigger objects need
/// a multipart upload, which this action does not do.
pub const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;

/// Why a store operation failed, and whether trying again may help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransferError {
    /// A network error, a timeout, a 5xx or a 429: the worker retries later.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (403, 404, an object too big...): the job fails.
    #[error("{0}")]
    Permanent(String),
    /// The multipart upload being resumed is gone (`NoSuchUpload`: aborted
    /// or expired upstream): the object starts over with a new one.
    #[error("{0}")]
    UploadGone(String),
}

/// One object found under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The full key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One page-complete listing: objects, and with a delimiter the "folders".
#[derive(Debug, Default)]
pub struct Listing {
    /// Objects directly under the prefix (all of them below it without a
    /// delimiter).
    pub objects: Vec<Entry>,
    /// Common prefixes (`photos/2024/`), only with a delimiter.
    pub folders: Vec<String>,
    /// The store had more than the listing's limit.
    pub truncated: bool,
}

/// An object being read: its length and its bytes as they arrive.
pub struct Download {
    /// `Content-Length` of the object.
    pub size: u64,
    /// The bytes, streamed.
    pub body: Body,
}

/// One end of a transfer: Frame.io's side or B2. The worker copies from one
/// store to another and never sees what is behind them; a store speaking
/// Frame.io's own upload and download API would be one more implementation.
pub trait ObjectStore: Send + Sync + 'static {
    /// A short name for messages (`b2`, `frameio`).
    fn name(&self) -> &str;

    /// Lists up to `limit` objects under `prefix`; with `delimiter` also the
    /// folders directly under it.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        delimiter: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Listing, TransferError>>;

    /// Starts reading `key`, or the bytes `range` of it.
    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'a, Result<Download, TransferError>>;

    /// Writes `key` from `body`, which must yield exactly `size` bytes (a
    /// body ending early or failing aborts the write, so nothing partial is
    /// stored under the key).
    fn put<'a>(
        &'a self,
        key: &'a str,
        size: u64,
        body: Body,
    ) -> BoxFuture<'a, Result<(), TransferError>>;

    /// Starts a multipart upload of `key`; returns its upload id.
    fn create_upload<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<String, TransferError>>;

    /// Uploads part `number` (from 1) of exactly `size` bytes; returns its
    /// ETag.
    fn put_part<'a>(
        &'a self,
        key: &'a str,
        upload_id: &'a str,
        number: usize,
        size: u64,
        body: Body,
    ) -> BoxFuture<'a, Result<String, TransferError>>;

    /// Joins the parts (their ETags in order) into the object.
    fn complete_upload<'a>(
        &'a self,
        key: &'a str,
        upload_id: &'a str,
        etags: &'a [String],
    ) -> BoxFuture<'a, Result<(), TransferError>>;
}

/// A bucket on an S3 endpoint (B2's S3 API, or the stand-in for Frame.io's
/// storage in tests).
#[derive(Clone)]
pub struct S3Store {
    name: String,
    bucket: String,
    service: Resign<UpstreamClient>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The service holds the secret key: never printed.
        f.debug_struct("S3Store")
            .field("name", &self.name)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// `bucket` at `endpoint` (`https://s3.us-west-004.backblazeb2.com`),
    /// signed with `credentials` for the region the endpoint implies.
    pub fn new(
        name: &str,
        endpoint: &str,
        bucket: &str,
        credentials: UpstreamCredentials,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let client = UpstreamClient::builder()
            // A whole object streams through one request: only the wait for
            // the answer's head is bounded, and a PUT's answer comes after
            // its last byte, so this bound must cover the slowest upload.
            .response_timeout(Duration::from_secs(6 * 3600))
            .build()?;
        let service = ResignLayer::new(Upstream::parse(endpoint)?)
            .sign_with(credentials)
            .layer(client);
        Ok(S3Store {
            name: name.to_owned(),
            bucket: bucket.to_owned(),
            service,
        })
    }

    /// Sends `method /bucket/key?query` through the re-signer: an unsigned
    /// request that `ResignLayer` signs with the store's key
    /// (`UNSIGNED-PAYLOAD`, so the body streams without being hashed).
    fn send(
        &self,
        method: Method,
        key: &str,
        query: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> BoxFuture<'static, Result<Response<Body>, TransferError>> {
        // Path-style; the host is a placeholder the re-signer replaces.
        let mut uri = format!("http://s3store/{}", self.bucket);
        if !key.is_empty() {
            uri.push('/');
            uri.push_str(&encode_key(key));
        }
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(query);
        }
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = match request.body(body) {
            Ok(request) => request,
            Err(e) => {
                let error = TransferError::Permanent(format!("cannot build a request: {e}"));
                return Box::pin(async move { Err(error) });
            }
        };
        // Boxed here, outside any async block: proving the exchange `Send`
        // inside the callers' async blocks trips a higher-ranked lifetime
        // limit of rustc's auto-trait check.
        let exchange: BoxFuture<'static, _> = Box::pin(self.service.clone().oneshot(request));
        Box::pin(async move {
            let response = exchange.await.unwrap_or_else(|never| match never {});
            // The upstream body's error is already a BoxError.
            Ok(response.map(UnsyncBoxBody::new))
        })
    }

    /// The body of a successful answer; a non-2xx answer, or a `200` whose
    /// body is an `<Error>` (S3 may answer CompleteMultipartUpload so), is
    /// the error.
    async fn answer(&self, what: &str, response: Response<Body>) -> Result<String, TransferError> {
        if !response.status().is_success() {
            return Err(self.refusal(what, response).await);
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| TransferError::Transient(format!("{} {what}: {e}", self.name)))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if text.contains("<Error>") {
            let code = element_text(&text, "Code").unwrap_or_default();
            let message = format!("{} {what}: {code}", self.name);
            return Err(if code == "InternalError" || code == "SlowDown" {
                TransferError::Transient(message)
            } else {
                TransferError::Permanent(message)
            });
        }
        Ok(text)
    }

    /// Turns a non-2xx answer into an error with S3's code, transient when
    /// trying again may work.
    async fn refusal(&self, what: &str, response: Response<Body>) -> TransferError {
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let text = String::from_utf8_lossy(&body);
        let code = element_text(&text, "Code").unwrap_or_default();
        let message = format!("{} {what}: {status} {code}", self.name);
        if code == "NoSuchUpload" {
            TransferError::UploadGone(message)
        } else if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            TransferError::Transient(message)
        } else {
            TransferError::Permanent(message)
        }
    }
}

impl ObjectStore for S3Store {
    fn name(&self) -> &str {
        &self.name
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
        delimiter: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Listing, TransferError>> {
        Box::pin(async move {
            let mut listing = Listing::default();
            let mut token: Option<String> = None;
            loop {
                let mut query = format!("list-type=2&prefix={}", encode_query(prefix));
                if let Some(delimiter) = delimiter {
                    query.push_str(&format!("&delimiter={}", encode_query(delimiter)));
                }
                if let Some(token) = &token {
                    query.push_str(&format!("&continuation-token={}", encode_query(token)));
                }
                let response = self.send(Method::GET, "", &query, &[], empty()).await?;
                if !response.status().is_success() {
                    return Err(self.refusal("list", response).await);
                }
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| TransferError::Transient(format!("{} list: {e}", self.name)))?
                    .to_bytes();
                let page = parse_list(&body).map_err(|e| {
                    TransferError::Permanent(format!("{} list: unreadable answer: {e}", self.name))
                })?;
                listing.objects.extend(page.objects);
                listing.folders.extend(page.folders);
                if listing.objects.len() + listing.folders.len() >= limit {
                    listing.truncated = page.next_token.is_some()
                        || listing.objects.len() + listing.folders.len() > limit;
                    listing.objects.truncate(limit);
                    let room = limit - listing.objects.len();
                    listing.folders.truncate(room);
                    return Ok(listing);
                }
                match page.next_token {
                    Some(next) => token = Some(next),
                    None => return Ok(listing),
                }
            }
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'a, Result<Download, TransferError>> {
        Box::pin(async move {
            let headers: Vec<(&str, String)> = match &range {
                Some(range) if range.end > range.start => {
                    vec![("range", format!("bytes={}-{}", range.start, range.end - 1))]
                }
                Some(_) => {
                    return Err(TransferError::Permanent(format!(
                        "{} GET {key}: an empty range",
                        self.name
                    )))
                }
                None => Vec::new(),
            };
            let response = self.send(Method::GET, key, "", &headers, empty()).await?;
            if range.is_some() && response.status() != StatusCode::PARTIAL_CONTENT {
                if response.status().is_success() {
                    // The whole object instead of the range: copying it as a
                    // part would corrupt the upload.
                    return Err(TransferError::Permanent(format!(
                        "{} GET {key}: the range was ignored ({})",
                        self.name,
                        response.status()
                    )));
                }
                return Err(self.refusal(&format!("GET {key}"), response).await);
            }
            if !response.status().is_success() {
                return Err(self.refusal(&format!("GET {key}"), response).await);
            }
            let size = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    TransferError::Permanent(format!(
                        "{} GET {key}: the answer has no Content-Length",
                        self.name
                    ))
                })?;
            Ok(Download {
                size,
                body: response.into_body(),
            })
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        size: u64,
        body: Body,
    ) -> BoxFuture<'a, Result<(), TransferError>> {
        Box::pin(async move {
            if size > MAX_SINGLE_PUT {
                return Err(TransferError::Permanent(format!(
                    "{key} is {size} bytes: objects over 5 GiB need a multipart upload, which this action does not do"
                )));
            }
            let headers = [("content-length", size.to_string())];
            let response = self.send(Method::PUT, key, "", &headers, body).await?;
            if !response.status().is_success() {
                return Err(self.refusal(&format!("PUT {key}"), response).await);
            }
            Ok(())
        })
    }

    fn create_upload<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<String, TransferError>> {
        Box::pin(async move {
            let response = self
                .send(Method::POST, key, "uploads", &[], empty())
                .await?;
            let body = self
                .answer(&format!("start an upload of {key}"), response)
                .await?;
            element_text(&body, "UploadId")
                .filter(|id| !id.is_empty())
                .ok_or_else(|| {
                    TransferError::Permanent(format!(
                        "{}: no UploadId in the answer to starting an upload of {key}",
                        self.name
                    ))
                })
        })
    }

    fn put_part<'a>(
        &'a self,
        key: &'a str,
        upload_id: &'a str,
        number: usize,
        size: u64,
        body: Body,
    ) -> BoxFuture<'a, Result<String, TransferError>> {
        Box::pin(async move {
            let query = format!("partNumber={number}&uploadId={}", encode_query(upload_id));
            let headers = [("content-length", size.to_string())];
            let response = self.send(Method::PUT, key, &query, &headers, body).await?;
            if !response.status().is_success() {
                return Err(self
                    .refusal(&format!("PUT part {number} of {key}"), response)
                    .await);
            }
            response
                .headers()
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| {
                    TransferError::Permanent(format!(
                        "{}: part {number} of {key} was answered without an ETag",
                        self.name
                    ))
                })
        })
    }

    fn complete_upload<'a>(
        &'a self,
        key: &'a str,
        upload_id: &'a str,
        etags: &'a [String],
    ) -> BoxFuture<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let mut xml = String::from("<CompleteMultipartUpload>");
            for (index, etag) in etags.iter().enumerate() {
                xml.push_str(&format!(
                    "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                    index + 1,
                    quick_xml::escape::escape(etag.as_str())
                ));
            }
            xml.push_str("</CompleteMultipartUpload>");
            let query = format!("uploadId={}", encode_query(upload_id));
            let headers = [("content-length", xml.len().to_string())];
            let body = UnsyncBoxBody::new(
                http_body_util::Full::new(Bytes::from(xml)).map_err(|never| match never {}),
            );
            let response = self.send(Method::POST, key, &query, &headers, body).await?;
            self.answer(&format!("complete the upload of {key}"), response)
                .await
                .map(drop)
        })
    }
}

fn empty() -> Body {
    UnsyncBoxBody::new(http_body_util::Empty::new().map_err(|never| match never {}))
}

/// Percent-encodes a key for the path, keeping `/` (SigV4's URI encoding of
/// S3 paths: unreserved characters stay).
fn encode_key(key: &str) -> String {
    encode(key, true)
}

/// Percent-encodes a query value.
fn encode_query(value: &str) -> String {
    encode(value, false)
}

fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// One page of a ListObjectsV2 answer.
#[derive(Debug, Default)]
struct Page {
    objects: Vec<Entry>,
    folders: Vec<String>,
    next_token: Option<String>,
}

/// Reads a ListObjectsV2 answer: `Contents` (`Key`, `Size`),
/// `CommonPrefixes` (`Prefix`) and `NextContinuationToken` when truncated.
fn parse_list(xml: &[u8]) -> Result<Page, String> {
    use quick_xml::events::Event as X;
    let text = std::str::from_utf8(xml).map_err(|e| e.to_string())?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    // quick-xml hands text and entity references (`&amp;`) over as separate
    // events: an element's text is gathered until it ends.
    let mut value = String::new();
    let mut page = Page::default();
    let mut truncated = false;
    let mut token = None;
    let (mut key, mut size) = (None::<String>, None::<u64>);
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            X::Start(start) => {
                path.push(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
                value.clear();
            }
            X::Text(text) => value.push_str(&text.decode().map_err(|e| e.to_string())?),
            X::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference.decode().map_err(|e| e.to_string())?;
                        quick_xml::escape::unescape(&format!("&{name};"))
                            .map_err(|e| e.to_string())?
                            .into_owned()
                    }
                };
                value.push_str(&resolved);
            }
            X::End(_) => {
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                let text = std::mem::take(&mut value);
                match names.as_slice() {
                    [_, "Contents", "Key"] => key = Some(text),
                    [_, "Contents", "Size"] => {
                        size = Some(
                            text.trim()
                                .parse()
                                .map_err(|_| "a Size that is no number")?,
                        )
                    }
                    [_, "Contents"] => {
                        let key = key.take().ok_or("a Contents without a Key")?;
                        let size = size.take().ok_or("a Contents without a Size")?;
                        page.objects.push(Entry { key, size });
                    }
                    [_, "CommonPrefixes", "Prefix"] => page.folders.push(text),
                    [_, "IsTruncated"] => truncated = text.trim() == "true",
                    [_, "NextContinuationToken"] => token = Some(text),
                    _ => {}
                }
                path.pop();
            }
            X::Eof => break,
            _ => {}
        }
    }
    if truncated {
        page.next_token = Some(token.ok_or("truncated without a NextContinuationToken")?);
    }
    Ok(page)
}

/// The text of the first `<name>` element (S3 error answers are flat).
fn element_text(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].to_owned())
}
