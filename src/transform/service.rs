//! [`Transform`]: picks out the requests a transform concerns (object
//! uploads, multipart steps, object reads) and hands them to the write path
//! ([`write`](super::write)) or the read path ([`read`](super::read)), which
//! run them through the codec as one or several requests to the inner
//! (re-signing) service. What both paths share lives here.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, Method, Request, Response, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tower_service::Service;

use super::body::{ResponseBody, TransformBody};
use super::codec::Codec;
use super::error::TransformError;
use super::future::ResponseFuture;
use super::layer::TransformConfig;
use super::read::read;
use super::write::{complete, create_multipart, put, upload_part};
use crate::body::BoxError;
use crate::s3error::{new_request_id, S3Error};
use crate::sigv4::PayloadMode;
use crate::verified::Verified;
use crate::xml::Element;

/// Names the codec that wrote an object; its presence is what makes a read
/// decode.
pub const META_TRANSFORM: &str = "x-amz-meta-s3tap-transform";
/// The plaintext length, when it was known before the upload was stored.
pub const META_LENGTH: &str = "x-amz-meta-s3tap-length";
/// Metadata keys under this prefix are the layer's: dropped from what
/// clients send, hidden from what they read.
const META_RESERVED: &str = "x-amz-meta-s3tap-";

/// A client multipart part is held whole while it is encoded (its stored
/// length must be known before it goes upstream): this caps that memory.
/// aws-cli and boto3 send 8 MiB parts, rclone 5 MiB.
pub const MAX_CLIENT_PART: usize = 64 * 1024 * 1024;

/// The service made by [`TransformLayer`](super::TransformLayer).
pub struct Transform<S> {
    inner: S,
    config: Arc<TransformConfig>,
}

impl<S> Transform<S> {
    pub(crate) fn new(inner: S, config: Arc<TransformConfig>) -> Self {
        Transform { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The layer that wraps services in this one
    /// ([`TransformLayer::new`](super::TransformLayer::new)).
    pub fn layer() -> super::TransformLayer {
        super::TransformLayer::new()
    }
}

impl<S: Clone> Clone for Transform<S> {
    fn clone(&self) -> Self {
        Transform {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Transform<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transform")
            .field("inner", &self.inner)
            .field("rules", &self.config.rules)
            .finish_non_exhaustive()
    }
}

/// What the layer does with one request.
enum Op {
    Pass,
    Put(Arc<dyn Codec>),
    CreateMultipart(Arc<dyn Codec>),
    UploadPart(Arc<dyn Codec>),
    Complete(Arc<dyn Codec>),
    Read,
    Refuse(&'static str),
}

impl<S, B, RB> Service<Request<B>> for Transform<S>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, RB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if matches!(*request.method(), Method::PUT | Method::POST) {
            // The layer's own metadata is never the client's to set: a
            // forged marker would make plain bytes read as encoded.
            strip_reserved(request.headers_mut());
        }
        let op = classify(&self.config, &request);
        if let Op::Pass = op {
            return ResponseFuture::inner(self.inner.call(request.map(TransformBody::client)));
        }
        // The service poll_ready readied is the one this request uses; the
        // clone takes its place for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        ResponseFuture::transformed(Box::pin(run(op, inner, config, request)))
    }
}

/// Why a transformed request did not get its answer: the inner service's
/// own error (passed on), or the layer's (answered as S3 XML).
pub(super) enum Failed<E> {
    Inner(E),
    Transform(TransformError),
}

impl<E> From<TransformError> for Failed<E> {
    fn from(error: TransformError) -> Self {
        Failed::Transform(error)
    }
}

pub(super) type Answer<RB, E> = Result<Response<ResponseBody<RB>>, Failed<E>>;

async fn run<S, B, RB>(
    op: Op,
    mut inner: S,
    config: Arc<TransformConfig>,
    request: Request<B>,
) -> Result<Response<ResponseBody<RB>>, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>> + Send,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send,
    RB::Error: Into<BoxError>,
{
    let resource = request.uri().path().to_owned();
    let is_head = request.method() == Method::HEAD;
    let answer = match op {
        Op::Pass => unreachable!("passed through in call"),
        Op::Put(codec) => put(&mut inner, &config, &*codec, request).await,
        Op::CreateMultipart(codec) => create_multipart(&mut inner, &*codec, request).await,
        Op::UploadPart(codec) => upload_part(&mut inner, &config, &*codec, request).await,
        Op::Complete(codec) => complete(&mut inner, &*codec, request).await,
        Op::Read => read(&mut inner, request).await,
        Op::Refuse(why) => Err(TransformError::Unsupported(why).into()),
    };
    match answer {
        Ok(response) => Ok(response),
        Err(Failed::Inner(error)) => Err(error),
        Err(Failed::Transform(error)) => {
            tracing::warn!("transform: {error}");
            Ok(error_response(&error.to_s3_error(), &resource, is_head))
        }
    }
}

pub(super) fn error_response<RB>(
    error: &S3Error,
    resource: &str,
    is_head: bool,
) -> Response<ResponseBody<RB>> {
    error
        .to_response(resource, &new_request_id(), is_head)
        .map(ResponseBody::bytes)
}

// ---- which requests ----------------------------------------------------------

fn query_names(uri: &Uri) -> Vec<&str> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .collect()
}

pub(super) fn query_value<'a>(uri: &'a Uri, wanted: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name == wanted).then_some(value)
    })
}

/// Query parameters that leave a request an object read or write: the
/// presigned URL's own, the version, response header overrides.
fn plain_object_param(name: &str) -> bool {
    name == "versionId"
        || name == "x-id"
        || name.starts_with("X-Amz-")
        || name.starts_with("response-")
}

fn classify<B>(config: &TransformConfig, request: &Request<B>) -> Op {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host());
    let target = config.client_addressing.target(host, request.uri().path());
    let (Some(bucket), key_path) = (target.bucket, target.key_path) else {
        return Op::Pass;
    };
    let key_bytes = crate::sigv4::canonical::percent_decode(
        key_path.strip_prefix('/').unwrap_or(key_path),
        false,
    );
    let key = String::from_utf8_lossy(&key_bytes);
    if key.is_empty() {
        return Op::Pass;
    }
    let names = query_names(request.uri());
    let has = |wanted: &str| names.contains(&wanted);
    let plain = names.iter().all(|n| plain_object_param(n));
    let method = request.method();
    if *method == Method::GET || *method == Method::HEAD {
        // Reads are decided by the object's metadata, not the rules: an
        // object written transformed reads back through any rule set.
        return if names
            .iter()
            .all(|n| plain_object_param(n) || *n == "partNumber")
        {
            Op::Read
        } else {
            Op::Pass
        };
    }
    let Some(rule) = config.rules.iter().find(|r| r.matches(&bucket, &key)) else {
        return Op::Pass;
    };
    let codec = rule.codec.clone();
    let copy = request.headers().contains_key("x-amz-copy-source");
    match *method {
        Method::PUT if has("partNumber") && has("uploadId") => {
            if copy {
                Op::Refuse("UploadPartCopy into a transformed key is not supported: the part would keep the source's stored bytes.")
            } else {
                Op::UploadPart(codec)
            }
        }
        Method::PUT if plain && !copy => Op::Put(codec),
        Method::POST if has("uploads") => Op::CreateMultipart(codec),
        Method::POST if has("uploadId") => Op::Complete(codec),
        _ => Op::Pass,
    }
}

// ---- requests to the inner service -------------------------------------------

pub(super) async fn send<S, B, RB>(
    inner: &mut S,
    request: Request<TransformBody<B>>,
) -> Result<Response<RB>, Failed<S::Error>>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
{
    std::future::poll_fn(|cx| inner.poll_ready(cx))
        .await
        .map_err(Failed::Inner)?;
    inner.call(request).await.map_err(Failed::Inner)
}

/// A request like the client's (target, signed identity, headers) with
/// another method, query and body; the body's SHA-256 becomes the payload
/// hash the re-signer signs, hashed here once.
pub(super) fn derived<B>(
    template: &request::Parts,
    method: Method,
    query: Option<&str>,
    headers: HeaderMap,
    body: Bytes,
) -> Request<TransformBody<B>> {
    let path = template.uri.path();
    let path_and_query = match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_owned(),
    };
    let mut uri = Uri::builder().path_and_query(path_and_query);
    if let (Some(scheme), Some(authority)) = (template.uri.scheme(), template.uri.authority()) {
        uri = uri.scheme(scheme.clone()).authority(authority.clone());
    }
    let mut request = Request::new(TransformBody::bytes(body.clone()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri.build().expect("a path from a valid URI stays valid");
    *request.version_mut() = template.version;
    *request.headers_mut() = headers;
    *request.extensions_mut() = template.extensions.clone();
    let length = body.len() as u64;
    if length > 0 || method == Method::PUT || method == Method::POST {
        request
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    if let Some(verified) = request.extensions_mut().get_mut::<Verified>() {
        verified.payload = PayloadMode::Hex(Sha256::digest(&body).into());
        verified.chunk_digests = None;
        verified.content_length = Some(length);
        verified.decoded_content_length = None;
        verified.original_content_encoding = None;
    }
    request
}

/// Headers that describe the client's plaintext payload, not the stored
/// bytes: they never go upstream with a transformed body.
pub(super) fn strip_payload_headers(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with("x-amz-checksum-")
                || matches!(
                    name,
                    "content-length"
                        | "content-md5"
                        | "transfer-encoding"
                        | "expect"
                        | "x-amz-decoded-content-length"
                        | "x-amz-trailer"
                        | "x-amz-sdk-checksum-algorithm"
                        | "x-amz-checksum-algorithm"
                        | "x-amz-checksum-type"
                )
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"aws-chunked"))
    {
        headers.remove(header::CONTENT_ENCODING);
    }
}

pub(super) fn strip_reserved(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(META_RESERVED))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Only what every request needs (the host the client signed).
pub(super) fn bare_headers(template: &request::Parts) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(host) = template.headers.get(header::HOST) {
        headers.insert(header::HOST, host.clone());
    }
    headers
}

pub(super) fn upstream_failed<RB>(
    step: &'static str,
    response: &Response<RB>,
) -> Option<TransformError> {
    (!response.status().is_success()).then(|| TransformError::Upstream {
        step,
        status: response.status(),
    })
}

pub(super) async fn collect<RB>(body: RB, limit: usize) -> Result<Bytes, TransformError>
where
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let limited = http_body_util::Limited::new(body, limit);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| TransformError::Invalid(format!("cannot read a body: {e}")))
}

/// The trimmed text of the root's child `name` in a small XML document
/// (entities resolved), or `None` when the document does not parse or has
/// no such child.
pub(super) fn xml_child_text(xml: &[u8], name: &str) -> Option<String> {
    Element::parse(xml)
        .ok()?
        .child_text(name)
        .map(str::to_owned)
}

/// Percent-encodes a query value (upload ids may hold `+`, `/`, `=`), with
/// the same rules the signer encodes it by.
pub(super) fn query_encode(value: &str) -> String {
    crate::sigv4::canonical::uri_encode(value.as_bytes(), false)
}

/// A single-part object's upstream ETag is the MD5 of the stored bytes, and
/// clients that check an MD5-shaped ETag against their plaintext (rclone)
/// would take the upload for corrupt: clients get it with the codec's name
/// appended, which no client reads as an MD5. Multipart ETags (`hex-N`)
/// already say they are no MD5 and pass unchanged.
pub(super) fn client_etag(headers: &mut HeaderMap, codec: &dyn Codec) {
    let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let inner = etag.trim_matches('"');
    if inner.contains('-') || inner.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&format!("\"{inner}.{}\"", codec.name())) {
        headers.insert(header::ETAG, value);
    }
}

/// Removes `x-amz-checksum-*`: on the way up the client's describe the
/// plaintext, not the bytes stored; on the way down the upstream's describe
/// the bytes stored, not the plaintext.
pub(super) fn strip_checksums(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-amz-checksum-"))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}
