//! [`Transform`]: picks out the requests a transform concerns (object
//! uploads, multipart steps, object reads) and runs them through the codec,
//! as one or several requests to the inner (re-signing) service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tower_service::Service;

use super::body::{ResponseBody, TransformBody};
use super::codec::{by_name, Codec, Encode, FrameIndex, IndexEntry};
use super::error::TransformError;
use super::future::ResponseFuture;
use super::layer::TransformConfig;
use crate::body::BoxError;
use crate::s3error::{new_request_id, S3Error, S3ErrorCode};
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

/// The largest `CompleteMultipartUpload` document read (10,000 parts fit).
const MAX_COMPLETE_XML: usize = 4 * 1024 * 1024;

/// The last bytes fetched to find an object's index in one request.
const INDEX_PROBE: u64 = 64 * 1024;

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
enum Failed<E> {
    Inner(E),
    Transform(TransformError),
}

impl<E> From<TransformError> for Failed<E> {
    fn from(error: TransformError) -> Self {
        Failed::Transform(error)
    }
}

type Answer<RB, E> = Result<Response<ResponseBody<RB>>, Failed<E>>;

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

fn error_response<RB>(
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

fn query_value<'a>(uri: &'a Uri, wanted: &str) -> Option<&'a str> {
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

async fn send<S, B, RB>(
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
fn derived<B>(
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
fn strip_payload_headers(headers: &mut HeaderMap) {
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

fn strip_reserved(headers: &mut HeaderMap) {
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
fn bare_headers(template: &request::Parts) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(host) = template.headers.get(header::HOST) {
        headers.insert(header::HOST, host.clone());
    }
    headers
}

fn upstream_failed<RB>(step: &'static str, response: &Response<RB>) -> Option<TransformError> {
    (!response.status().is_success()).then(|| TransformError::Upstream {
        step,
        status: response.status(),
    })
}

async fn collect<RB>(body: RB, limit: usize) -> Result<Bytes, TransformError>
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
fn xml_child_text(xml: &[u8], name: &str) -> Option<String> {
    Element::parse(xml)
        .ok()?
        .child_text(name)
        .map(str::to_owned)
}

/// Percent-encodes a query value (upload ids may hold `+`, `/`, `=`), with
/// the same rules the signer encodes it by.
fn query_encode(value: &str) -> String {
    crate::sigv4::canonical::uri_encode(value.as_bytes(), false)
}

// ---- encoding an upload ------------------------------------------------------

/// Feeds plaintext to an encoder, ending a frame every `frame_size` bytes
/// and recording each frame in the index.
struct FrameWriter<'c> {
    encoder: Box<dyn Encode>,
    frame_size: u64,
    frame_plain: u64,
    /// Stored bytes produced before the current frame (sent or not).
    frame_start: u64,
    /// Stored bytes already taken out of `out`.
    taken: u64,
    out: Vec<u8>,
    index: FrameIndex,
    plain: u64,
    codec: &'c dyn Codec,
}

impl<'c> FrameWriter<'c> {
    fn new(codec: &'c dyn Codec, frame_size: u64) -> Result<Self, TransformError> {
        Ok(FrameWriter {
            encoder: codec.encoder().map_err(TransformError::Encode)?,
            frame_size,
            frame_plain: 0,
            frame_start: 0,
            taken: 0,
            out: Vec::new(),
            index: FrameIndex::default(),
            plain: 0,
            codec,
        })
    }

    fn write(&mut self, mut data: &[u8]) -> Result<(), TransformError> {
        self.plain += data.len() as u64;
        while !data.is_empty() {
            let room = (self.frame_size - self.frame_plain).min(data.len() as u64) as usize;
            self.encoder
                .write(&data[..room], &mut self.out)
                .map_err(TransformError::Encode)?;
            self.frame_plain += room as u64;
            data = &data[room..];
            if self.frame_plain == self.frame_size {
                self.end_frame()?;
            }
        }
        Ok(())
    }

    fn end_frame(&mut self) -> Result<(), TransformError> {
        self.encoder
            .end_frame(&mut self.out)
            .map_err(TransformError::Encode)?;
        let produced = self.taken + self.out.len() as u64;
        self.index.entries.push(IndexEntry {
            stored: produced - self.frame_start,
            plain: self.frame_plain,
        });
        self.frame_start = produced;
        self.frame_plain = 0;
        Ok(())
    }

    /// Ends the last frame (an empty upload still gets one).
    fn finish(&mut self) -> Result<(), TransformError> {
        if self.frame_plain > 0 || self.index.entries.is_empty() {
            self.end_frame()?;
        }
        Ok(())
    }

    /// Pads what was written so far up to `min` stored bytes with
    /// skippable frames, counted in the last index entry.
    fn pad_to(&mut self, min: usize) {
        let len = self.out.len();
        if len >= min {
            return;
        }
        let payload = (min - len).saturating_sub(self.codec.skippable_len(0));
        self.codec.skippable(&vec![0u8; payload], &mut self.out);
        let added = (self.out.len() - len) as u64;
        if let Some(last) = self.index.entries.last_mut() {
            last.stored += added;
        }
        self.frame_start += added;
    }

    fn take(&mut self) -> Bytes {
        let out = std::mem::take(&mut self.out);
        self.taken += out.len() as u64;
        Bytes::from(out)
    }
}

async fn next_data<B>(body: &mut B) -> Result<Option<Bytes>, TransformError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => {
                let error: BoxError = e.into();
                // The verifier's refusal keeps its own code (a forged
                // payload hash is XAmzContentSHA256Mismatch, not a broken
                // connection).
                return Err(match error.downcast_ref::<crate::verify::VerifyError>() {
                    Some(refusal) => TransformError::Refused(refusal.to_s3_error()),
                    None => TransformError::Body(error.to_string()),
                });
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// An upstream multipart upload the layer opened for a `PUT` that outgrew
/// one part.
struct OwnUpload {
    id: String,
    etags: Vec<String>,
}

async fn put<S, B, RB>(
    inner: &mut S,
    config: &TransformConfig,
    codec: &dyn Codec,
    request: Request<B>,
) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let (template, body) = request.into_parts();
    let mut body = Box::pin(body);
    let mut upload: Option<OwnUpload> = None;
    let result = put_stream(inner, config, codec, &template, &mut body, &mut upload).await;
    if result.is_err() {
        if let Some(upload) = upload {
            // Nothing of a failed upload may stay upstream.
            let query = format!("uploadId={}", query_encode(&upload.id));
            let abort = derived(
                &template,
                Method::DELETE,
                Some(&query),
                bare_headers(&template),
                Bytes::new(),
            );
            let _ = send(inner, abort).await;
        }
    }
    result
}

async fn put_stream<S, B, RB>(
    inner: &mut S,
    config: &TransformConfig,
    codec: &dyn Codec,
    template: &request::Parts,
    body: &mut std::pin::Pin<Box<B>>,
    upload: &mut Option<OwnUpload>,
) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let mut writer = FrameWriter::new(codec, config.frame_size)?;
    let mut headers = template.headers.clone();
    strip_payload_headers(&mut headers);
    headers.insert(META_TRANSFORM, HeaderValue::from_static(codec.name()));
    while let Some(data) = next_data(body).await? {
        writer.write(&data)?;
        if writer.out.len() >= config.part_size {
            if upload.is_none() {
                *upload = Some(create_own_upload(inner, template, headers.clone()).await?);
            }
            let own = upload.as_mut().expect("created above");
            let part = writer.take();
            own.etags
                .push(upload_own_part(inner, template, &own.id, own.etags.len() + 1, part).await?);
        }
    }
    writer.finish()?;
    let index = writer.index.clone();
    index.write(codec, &mut writer.out);
    let rest = writer.take();
    match upload {
        None => {
            headers.insert(META_LENGTH, HeaderValue::from(writer.plain));
            let query = template.uri.query();
            let put = derived(template, Method::PUT, query, headers, rest);
            let mut response = send(inner, put).await?;
            client_etag(response.headers_mut(), codec);
            Ok(response.map(ResponseBody::inner))
        }
        Some(own) => {
            let last = own.etags.len() + 1;
            own.etags
                .push(upload_own_part(inner, template, &own.id, last, rest).await?);
            let parts: Vec<(u32, String)> = own
                .etags
                .iter()
                .enumerate()
                .map(|(i, etag)| (i as u32 + 1, etag.clone()))
                .collect();
            let (status, xml) = complete_upstream(inner, template, &own.id, &parts).await?;
            let etag = xml_child_text(xml.as_bytes(), "ETag").unwrap_or_default();
            let mut response = Response::new(ResponseBody::bytes(Bytes::new()));
            *response.status_mut() = status;
            if let Ok(value) = HeaderValue::from_str(&etag) {
                response.headers_mut().insert(header::ETAG, value);
            }
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            Ok(response)
        }
    }
}

async fn create_own_upload<S, B, RB>(
    inner: &mut S,
    template: &request::Parts,
    headers: HeaderMap,
) -> Result<OwnUpload, Failed<S::Error>>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let create = derived(
        template,
        Method::POST,
        Some("uploads"),
        headers,
        Bytes::new(),
    );
    let response = send(inner, create).await?;
    if let Some(error) = upstream_failed("CreateMultipartUpload", &response) {
        return Err(error.into());
    }
    let xml = collect(response.into_body(), 64 * 1024).await?;
    let id = xml_child_text(&xml, "UploadId").ok_or(TransformError::Upstream {
        step: "CreateMultipartUpload",
        status: StatusCode::OK,
    })?;
    Ok(OwnUpload {
        id,
        etags: Vec::new(),
    })
}

async fn upload_own_part<S, B, RB>(
    inner: &mut S,
    template: &request::Parts,
    upload_id: &str,
    number: usize,
    data: Bytes,
) -> Result<String, Failed<S::Error>>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
{
    let query = format!("partNumber={number}&uploadId={}", query_encode(upload_id));
    let part = derived(
        template,
        Method::PUT,
        Some(&query),
        bare_headers(template),
        data,
    );
    let response = send(inner, part).await?;
    if let Some(error) = upstream_failed("UploadPart", &response) {
        return Err(error.into());
    }
    Ok(response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned())
}

/// Sends `CompleteMultipartUpload` for `parts` (number, upstream ETag);
/// S3 may answer 200 with an error document, which counts as a failure.
async fn complete_upstream<S, B, RB>(
    inner: &mut S,
    template: &request::Parts,
    upload_id: &str,
    parts: &[(u32, String)],
) -> Result<(StatusCode, String), Failed<S::Error>>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let mut xml =
        String::from("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (number, etag) in parts {
        let etag = etag.replace('&', "&amp;").replace('"', "&quot;");
        xml.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let query = format!("uploadId={}", query_encode(upload_id));
    let mut headers = bare_headers(template);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    let complete = derived(
        template,
        Method::POST,
        Some(&query),
        headers,
        Bytes::from(xml),
    );
    let response = send(inner, complete).await?;
    let status = response.status();
    let body = collect(response.into_body(), 1024 * 1024).await?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() || body.contains("<Error>") {
        return Err(TransformError::Upstream {
            step: "CompleteMultipartUpload",
            status,
        }
        .into());
    }
    Ok((status, body))
}

// ---- client multipart uploads -------------------------------------------------

async fn create_multipart<S, B, RB>(
    inner: &mut S,
    codec: &dyn Codec,
    request: Request<B>,
) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
{
    let (mut parts, body) = request.into_parts();
    // The upload's parts are stored encoded: checksums the client asks the
    // upstream to keep would be of the wrong bytes.
    let length = parts.headers.get(header::CONTENT_LENGTH).cloned();
    strip_payload_headers(&mut parts.headers);
    if let Some(length) = length {
        parts.headers.insert(header::CONTENT_LENGTH, length);
    }
    // The upload's length is not known yet: reads find it in the index the
    // completion appends.
    parts
        .headers
        .insert(META_TRANSFORM, HeaderValue::from_static(codec.name()));
    let response = send(
        inner,
        Request::from_parts(parts, TransformBody::client(body)),
    )
    .await?;
    Ok(response.map(ResponseBody::inner))
}

/// The part ETag a client gets: the upstream's, with the part's plaintext
/// and stored lengths, which the client hands back on completion. That is
/// how the completion builds the index without the proxy keeping state.
fn part_etag(upstream: &str, plain: u64, stored: u64) -> String {
    format!("\"{}.s3tap.{plain}.{stored}\"", upstream.trim_matches('"'))
}

/// The parts a client's `CompleteMultipartUpload` document lists: number,
/// and what its ETag carries when the layer wrote it
/// ([`parse_part_etag`]).
type CompletedPart = (u32, Option<(String, u64, u64)>);

fn completed_parts(xml: &[u8]) -> Result<Vec<CompletedPart>, TransformError> {
    // A document that does not parse names no part of ours: it goes on as
    // it came, and the upstream answers for it (MalformedXML).
    let Ok(document) = Element::parse(xml) else {
        return Ok(Vec::new());
    };
    document
        .children
        .iter()
        .filter(|c| c.name == "Part")
        .map(|part| {
            let number: u32 = part
                .child_text("PartNumber")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| TransformError::Invalid("a part without a PartNumber".into()))?;
            Ok((
                number,
                parse_part_etag(part.child_text("ETag").unwrap_or("")),
            ))
        })
        .collect()
}

/// (upstream ETag, plaintext length, stored length) from a part ETag.
fn parse_part_etag(etag: &str) -> Option<(String, u64, u64)> {
    // The document's entities are resolved already (Go's encoder, rclone's,
    // writes the quotes as `&#34;`).
    let etag = etag.trim().trim_matches('"');
    let mut pieces = etag.rsplitn(4, '.');
    let stored = pieces.next()?.parse().ok()?;
    let plain = pieces.next()?.parse().ok()?;
    if pieces.next()? != "s3tap" {
        return None;
    }
    Some((format!("\"{}\"", pieces.next()?), plain, stored))
}

async fn upload_part<S, B, RB>(
    inner: &mut S,
    config: &TransformConfig,
    codec: &dyn Codec,
    request: Request<B>,
) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (template, body) = request.into_parts();
    let mut body = Box::pin(body);
    let mut writer = FrameWriter::new(codec, config.frame_size)?;
    while let Some(data) = next_data(&mut body).await? {
        writer.write(&data)?;
        if writer.out.len() > MAX_CLIENT_PART {
            return Err(TransformError::Invalid(format!(
                "a part of a transformed multipart upload may take at most {MAX_CLIENT_PART} bytes encoded"
            ))
            .into());
        }
    }
    writer.finish()?;
    // Every client part is a non-last part upstream (the index part comes
    // last), so each must reach the upstream's minimum.
    writer.pad_to(config.min_part_size);
    let plain = writer.plain;
    let data = writer.take();
    let stored = data.len() as u64;
    let mut headers = template.headers.clone();
    strip_payload_headers(&mut headers);
    let part = derived(&template, Method::PUT, template.uri.query(), headers, data);
    let mut response = send(inner, part).await?;
    if response.status().is_success() {
        let upstream = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if let Ok(value) = HeaderValue::from_str(&part_etag(&upstream, plain, stored)) {
            response.headers_mut().insert(header::ETAG, value);
        }
        strip_checksums(response.headers_mut());
    }
    Ok(response.map(ResponseBody::inner))
}

async fn complete<S, B, RB>(
    inner: &mut S,
    codec: &dyn Codec,
    request: Request<B>,
) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let (template, body) = request.into_parts();
    let xml = collect(body, MAX_COMPLETE_XML).await?;
    let parts = completed_parts(&xml)?;
    let transformed = parts.iter().filter(|(_, p)| p.is_some()).count();
    let upload_id = query_value(&template.uri, "uploadId")
        .unwrap_or("")
        .to_owned();
    if transformed == 0 {
        // Not an upload this layer encoded: forward the document as it came.
        let mut headers = template.headers.clone();
        strip_payload_headers(&mut headers);
        let forward = derived(&template, Method::POST, template.uri.query(), headers, xml);
        return Ok(send(inner, forward).await?.map(ResponseBody::inner));
    }
    if transformed != parts.len() {
        return Err(TransformError::Invalid(
            "the parts of one upload were not all written through the transform".into(),
        )
        .into());
    }
    let decoded_id =
        String::from_utf8_lossy(&crate::sigv4::canonical::percent_decode(&upload_id, false))
            .into_owned();
    let index = FrameIndex {
        entries: parts
            .iter()
            .map(|(_, p)| {
                let (_, plain, stored) = p.as_ref().expect("checked above");
                IndexEntry {
                    stored: *stored,
                    plain: *plain,
                }
            })
            .collect(),
    };
    let last = parts.iter().map(|(n, _)| *n).max().unwrap_or(0) + 1;
    if last > 10_000 {
        return Err(TransformError::Invalid(
            "a transformed upload needs one part number after the client's last (at most 9,999 parts)".into(),
        )
        .into());
    }
    let mut tail = Vec::new();
    index.write(codec, &mut tail);
    let index_etag = upload_own_part(
        inner,
        &template,
        &decoded_id,
        last as usize,
        Bytes::from(tail),
    )
    .await?;
    let mut upstream_parts: Vec<(u32, String)> = parts
        .into_iter()
        .map(|(n, p)| (n, p.expect("checked above").0))
        .collect();
    upstream_parts.push((last, index_etag));
    let (status, body) = complete_upstream(inner, &template, &decoded_id, &upstream_parts).await?;
    let mut response = Response::new(ResponseBody::bytes(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    Ok(response)
}

// ---- reads --------------------------------------------------------------------

/// A single-part object's upstream ETag is the MD5 of the stored bytes, and
/// clients that check an MD5-shaped ETag against their plaintext (rclone)
/// would take the upload for corrupt: clients get it with the codec's name
/// appended, which no client reads as an MD5. Multipart ETags (`hex-N`)
/// already say they are no MD5 and pass unchanged.
fn client_etag(headers: &mut HeaderMap, codec: &dyn Codec) {
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

/// The client's conditions name the ETags it was given; the upstream knows
/// them without the codec's suffix.
fn upstream_conditions(headers: &mut HeaderMap) {
    for name in [header::IF_MATCH, header::IF_NONE_MATCH] {
        let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if !value.contains(".zstd\"") {
            continue;
        }
        if let Ok(value) = HeaderValue::from_str(&value.replace(".zstd\"", "\"")) {
            headers.insert(name, value);
        }
    }
}

fn strip_checksums(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-amz-checksum-"))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// A single `Range: bytes=...` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangeSpec {
    From(u64, Option<u64>),
    Suffix(u64),
}

fn parse_range(value: &str) -> Option<RangeSpec> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    if first.is_empty() {
        return Some(RangeSpec::Suffix(last.trim().parse().ok()?));
    }
    let first = first.trim().parse().ok()?;
    let last = if last.trim().is_empty() {
        None
    } else {
        Some(last.trim().parse().ok()?)
    };
    if last.is_some_and(|l| l < first) {
        return None;
    }
    Some(RangeSpec::From(first, last))
}

/// The inclusive plaintext range, or `None` when it cannot be satisfied.
fn resolve(range: RangeSpec, total: u64) -> Option<(u64, u64)> {
    if total == 0 {
        return None;
    }
    match range {
        RangeSpec::From(first, _) if first >= total => None,
        RangeSpec::From(first, last) => Some((first, last.map_or(total - 1, |l| l.min(total - 1)))),
        RangeSpec::Suffix(0) => None,
        RangeSpec::Suffix(n) => Some((total.saturating_sub(n), total - 1)),
    }
}

/// The stored object's length from a 200 or 206 response.
fn stored_length(headers: &HeaderMap, status: StatusCode) -> Option<u64> {
    if status == StatusCode::PARTIAL_CONTENT {
        let range = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
        return range.rsplit('/').next()?.parse().ok();
    }
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A GET like the client's read (same target, version, signed identity),
/// for stored bytes `first..=last`, without the conditions that could make
/// it answer 304.
fn ranged_get<B>(template: &request::Parts, first: u64, last: u64) -> Request<TransformBody<B>> {
    let mut headers = template.headers.clone();
    for name in [
        header::RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_RANGE,
    ] {
        headers.remove(name);
    }
    headers.insert(
        header::RANGE,
        HeaderValue::from_str(&format!("bytes={first}-{last}")).expect("ASCII range"),
    );
    derived(
        template,
        Method::GET,
        template.uri.query(),
        headers,
        Bytes::new(),
    )
}

async fn fetch_index<S, B, RB>(
    inner: &mut S,
    template: &request::Parts,
    codec: &dyn Codec,
    stored_len: u64,
) -> Result<FrameIndex, Failed<S::Error>>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    if stored_len == 0 {
        return Err(TransformError::BadIndex.into());
    }
    let mut want = stored_len.min(INDEX_PROBE);
    loop {
        let request = ranged_get(template, stored_len - want, stored_len - 1);
        let response = send(inner, request).await?;
        if let Some(error) = upstream_failed("GetObject (index)", &response) {
            return Err(error.into());
        }
        let tail = collect(response.into_body(), want as usize).await?;
        let size = FrameIndex::count_from_tail(codec, &tail)
            .and_then(|count| FrameIndex::stored_size(codec, count))
            .ok_or(TransformError::BadIndex)?;
        if size <= tail.len() as u64 {
            return FrameIndex::from_tail(codec, &tail)
                .ok_or_else(|| TransformError::BadIndex.into());
        }
        if size > stored_len || size > 16 * 1024 * 1024 || want == size {
            return Err(TransformError::BadIndex.into());
        }
        want = size;
    }
}

async fn read<S, B, RB>(inner: &mut S, request: Request<B>) -> Answer<RB, S::Error>
where
    S: Service<Request<TransformBody<B>>, Response = Response<RB>>,
    B: Body<Data = Bytes>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let (mut template, body) = request.into_parts();
    upstream_conditions(&mut template.headers);
    let range = template
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let is_head = template.method == Method::HEAD;
    let part_number = query_value(&template.uri, "partNumber").is_some();
    let forward = Request::from_parts(template.clone(), TransformBody::client(body));
    let mut response = send(inner, forward).await?;
    if response.status() == StatusCode::RANGE_NOT_SATISFIABLE && range.is_some() {
        // The range was read against the stored (smaller) bytes; a HEAD
        // tells whether the object is transformed and the range is the
        // plaintext's to judge.
        let mut headers = template.headers.clone();
        headers.remove(header::RANGE);
        let probe = derived(
            &template,
            Method::HEAD,
            template.uri.query(),
            headers,
            Bytes::new(),
        );
        let head = send(inner, probe).await?;
        if head.headers().contains_key(META_TRANSFORM) && head.status() == StatusCode::OK {
            response = head;
        }
    }
    let status = response.status();
    let Some(name) = response
        .headers()
        .get(META_TRANSFORM)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Ok(response.map(ResponseBody::inner));
    };
    if status != StatusCode::OK && status != StatusCode::PARTIAL_CONTENT {
        let mut response = response;
        strip_reserved(response.headers_mut());
        return Ok(response.map(ResponseBody::inner));
    }
    if part_number {
        return Err(TransformError::Unsupported(
            "GetObject by partNumber is not supported on a transformed object: its parts are stored encoded; read it whole or by Range.",
        )
        .into());
    }
    let codec = by_name(&name).ok_or(TransformError::UnknownCodec(name))?;
    let stored_len = stored_length(response.headers(), status).ok_or(TransformError::BadIndex)?;
    let meta_len = response
        .headers()
        .get(META_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (mut head, body) = response.into_parts();
    strip_reserved(&mut head.headers);
    strip_checksums(&mut head.headers);
    head.headers.remove(header::CONTENT_RANGE);
    head.headers.remove("x-amz-mp-parts-count");
    client_etag(&mut head.headers, &*codec);
    let index = if meta_len.is_none() || range.is_some() {
        Some(fetch_index(inner, &template, &*codec, stored_len).await?)
    } else {
        None
    };
    let total = meta_len.unwrap_or_else(|| index.as_ref().map_or(0, FrameIndex::plain_len));
    let Some(range) = range else {
        head.status = StatusCode::OK;
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
        let body = if is_head {
            ResponseBody::bytes(Bytes::new())
        } else if status == StatusCode::OK {
            let decoder = codec.decoder().map_err(TransformError::Decode)?;
            ResponseBody::decoded(body, decoder, 0, total)
        } else {
            return Err(TransformError::BadIndex.into());
        };
        return Ok(Response::from_parts(head, body));
    };
    drop(body);
    let Some((first, last)) = resolve(range, total) else {
        let error = S3Error::new(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        )
        .with_detail("RangeRequested", format!("{range:?}"))
        .with_detail("ActualObjectSize", total.to_string());
        return Ok(error_response(&error, template.uri.path(), is_head));
    };
    let len = last - first + 1;
    head.status = StatusCode::PARTIAL_CONTENT;
    head.headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    head.headers.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")).expect("ASCII range"),
    );
    if is_head {
        return Ok(Response::from_parts(
            head,
            ResponseBody::bytes(Bytes::new()),
        ));
    }
    let index = index.expect("fetched for ranges");
    let (stored_first, stored_last, skip) =
        index.plan(first, last).ok_or(TransformError::BadIndex)?;
    let response = send(inner, ranged_get(&template, stored_first, stored_last)).await?;
    if let Some(error) = upstream_failed("GetObject (range)", &response) {
        return Err(error.into());
    }
    let decoder = codec.decoder().map_err(TransformError::Decode)?;
    Ok(Response::from_parts(
        head,
        ResponseBody::decoded(response.into_body(), decoder, skip, len),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_etags_carry_the_lengths_back() {
        let etag = part_etag("\"abc\"", 8, 5);
        assert_eq!(etag, "\"abc.s3tap.8.5\"");
        assert_eq!(parse_part_etag(&etag), Some(("\"abc\"".into(), 8, 5)));
        assert_eq!(parse_part_etag("\"abc\""), None);
    }

    #[test]
    fn completion_documents_are_read_whatever_quote_escape_they_use() {
        // boto3 writes `&quot;`, rclone's Go encoder `&#34;`, others `&#x22;`.
        let xml = b"<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
            <Part><PartNumber>1</PartNumber><ETag>&quot;abc.s3tap.8.5&quot;</ETag></Part>\
            <Part><ETag>&#34;def.s3tap.9.6&#34;</ETag><PartNumber> 2 </PartNumber></Part>\
            <Part><PartNumber>3</PartNumber><ETag>&#x22;plain&#x22;</ETag></Part>\
            </CompleteMultipartUpload>";
        assert_eq!(
            completed_parts(xml).unwrap(),
            vec![
                (1, Some(("\"abc\"".into(), 8, 5))),
                (2, Some(("\"def\"".into(), 9, 6))),
                (3, None),
            ]
        );
        assert_eq!(
            completed_parts(b"<CompleteMultipartUpload><Part>").unwrap(),
            vec![]
        );
        assert!(completed_parts(
            b"<CompleteMultipartUpload><Part><ETag>x</ETag></Part></CompleteMultipartUpload>"
        )
        .is_err());
    }

    #[test]
    fn ranges_resolve_as_s3_does() {
        let r = |v| parse_range(v).and_then(|r| resolve(r, 100));
        assert_eq!(r("bytes=0-9"), Some((0, 9)));
        assert_eq!(r("bytes=90-200"), Some((90, 99)));
        assert_eq!(r("bytes=50-"), Some((50, 99)));
        assert_eq!(r("bytes=-10"), Some((90, 99)));
        assert_eq!(r("bytes=-1000"), Some((0, 99)));
        assert_eq!(r("bytes=100-"), None);
        assert_eq!(parse_range("bytes=0-1,5-6"), None);
    }
}
