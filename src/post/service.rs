//! [`PostObject`]: recognises a browser form upload, checks its policy and
//! signature from the fields before the file, takes the file (spooled or
//! streamed) and hands the inner service the `PUT` of it; every other
//! request goes to the wrapped stack untouched.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tower_service::Service;

use super::body::{PostBody, StreamVerdict};
use super::error::PostError;
use super::form::{form_boundary, read_form, FilePart, FormFields};
use super::future::ResponseFuture;
use super::layer::PostConfig;
use super::policy::PostPolicy;
use super::response::{Outcome, PostResponseBody};
use crate::body::BoxError;
use crate::credentials::{Credential, CredentialStore};
use crate::crypto::constant_time_eq;
use crate::sigv4::auth::ALGORITHM;
use crate::sigv4::canonical::uri_encode;
use crate::sigv4::{sign_post_policy, AmzDate, CredentialScope, PayloadMode, SignedHeaders};
use crate::verified::{AuthKind, Observed, Rejection, Verified};

/// The service made by [`PostObjectLayer`](super::PostObjectLayer): form
/// uploads go to `form` as a verified `PUT`, everything else to `inner`.
pub struct PostObject<S, F, C> {
    inner: S,
    form: F,
    store: Arc<C>,
    config: Arc<PostConfig>,
}

impl<S, F, C> PostObject<S, F, C> {
    pub(crate) fn new(inner: S, form: F, store: Arc<C>, config: Arc<PostConfig>) -> Self {
        PostObject {
            inner,
            form,
            store,
            config,
        }
    }

    /// The wrapped service (every request but form uploads).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service that gets every request but form uploads.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, F: Clone, C> Clone for PostObject<S, F, C> {
    fn clone(&self) -> Self {
        PostObject {
            inner: self.inner.clone(),
            form: self.form.clone(),
            store: self.store.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug, F, C> fmt::Debug for PostObject<S, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostObject")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, F, C, ReqBody, A, R> Service<Request<ReqBody>> for PostObject<S, F, C>
where
    S: Service<Request<ReqBody>, Response = Response<A>>,
    F: Service<Request<PostBody>, Response = Response<R>, Error = S::Error>
        + Clone
        + Send
        + 'static,
    F::Future: Send,
    C: CredentialStore,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    S::Error: Send + 'static,
    A: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<PostResponseBody<A, R>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, A, R, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(target) = form_upload_target(&self.config, &request) else {
            return ResponseFuture::inner(self.inner.call(request));
        };
        let form = self.form.clone();
        let store = self.store.clone();
        let config = self.config.clone();
        ResponseFuture::form(Box::pin(handle(form, store, config, target, request)))
    }
}

/// What a form upload's request head says before its body is read.
pub(crate) struct Target {
    bucket: String,
    boundary: String,
}

/// A `POST` to a bucket (no key, no query) with a `multipart/form-data`
/// body and no other authentication is a form upload.
fn form_upload_target<B>(config: &PostConfig, request: &Request<B>) -> Option<Target> {
    if request.method() != Method::POST
        || request.uri().query().is_some_and(|q| !q.is_empty())
        || request.headers().contains_key(header::AUTHORIZATION)
    {
        return None;
    }
    let boundary = form_boundary(request.headers().get(header::CONTENT_TYPE)?.to_str().ok()?)?;
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    let target = config.addressing.target(host, request.uri().path());
    if !matches!(target.key_path, "" | "/") {
        return None;
    }
    Some(Target {
        bucket: target.bucket?,
        boundary,
    })
}

async fn handle<F, C, ReqBody, A, R, E>(
    mut form: F,
    store: Arc<C>,
    config: Arc<PostConfig>,
    target: Target,
    request: Request<ReqBody>,
) -> Result<Response<PostResponseBody<A, R>>, E>
where
    F: Service<Request<PostBody>, Response = Response<R>, Error = E>,
    C: CredentialStore,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
{
    let resource = request.uri().path().to_owned();
    let request_id = crate::s3error::RequestId::from_extensions_or_new(request.extensions());
    let (put, outcome) = match prepare(&store, &config, &target, request).await {
        Ok(prepared) => prepared,
        Err(error) => {
            tracing::info!(reason = error.reason(), "form upload refused: {error}");
            return Ok(super::response::refusal(&error, &resource, &request_id));
        }
    };
    std::future::poll_fn(|cx| form.poll_ready(cx)).await?;
    let response = form.call(put).await?;
    Ok(outcome.finish(response, &resource, &request_id))
}

/// Reads and checks the form, takes the file, and builds the `PUT`.
async fn prepare<C, ReqBody>(
    store: &C,
    config: &PostConfig,
    target: &Target,
    request: Request<ReqBody>,
) -> Result<(Request<PostBody>, Outcome), PostError>
where
    C: CredentialStore,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let (mut fields, file) = read_form(body.into_data_stream(), &target.boundary).await?;

    // Who signed, and is the policy theirs: all before any file byte is read.
    if fields.get("x-amz-signature").is_none()
        && fields.get("awsaccesskeyid").is_some()
        && fields.get("signature").is_some()
    {
        return Err(PostError::SigV2);
    }
    let Some(policy_text) = fields.get("policy") else {
        return Err(PostError::Anonymous);
    };
    let algorithm = required(&fields, "x-amz-algorithm")?;
    if algorithm != ALGORITHM {
        return Err(PostError::UnsupportedAlgorithm(algorithm.to_owned()));
    }
    let scope = CredentialScope::parse(required(&fields, "x-amz-credential")?)
        .map_err(|_| PostError::MalformedCredential)?;
    // The request log's line names the key of a refused form too (a span
    // without the field ignores this).
    tracing::Span::current().record("access_key_id", scope.access_key_id.as_str());
    let date = AmzDate::parse(required(&fields, "x-amz-date")?)
        .filter(|date| date.date_stamp() == scope.date)
        .ok_or(PostError::MalformedDate)?;
    let signature_hex = required(&fields, "x-amz-signature")?;
    let region_ok = config
        .regions
        .as_ref()
        .is_none_or(|regions| regions.contains(&scope.region));
    if !region_ok || scope.service != config.service {
        return Err(PostError::WrongScope(scope.scope_string()));
    }
    let credential = store
        .lookup(&scope.access_key_id)
        .await
        .map_err(|e| PostError::CredentialStore(e.to_string()))?
        .ok_or(PostError::UnknownAccessKey)?;
    let key = config.key_cache.get(
        credential.secret.expose(),
        &scope.date,
        &scope.region,
        &scope.service,
    );
    let expected = sign_post_policy(&key, policy_text);
    let mut given = [0u8; 32];
    if hex::decode_to_slice(signature_hex.trim(), &mut given).is_err()
        || !constant_time_eq(&given, &expected)
    {
        return Err(PostError::SignatureMismatch);
    }

    // What the policy allows: checked on the fields as sent, `${filename}`
    // replaced, before the file is touched.
    let policy = PostPolicy::from_base64(policy_text)?;
    let raw_key = required(&fields, "key")?.to_owned();
    let object_key = match &file.file_name {
        Some(name) => raw_key.replace("${filename}", name),
        None => raw_key,
    };
    if object_key.is_empty() {
        return Err(PostError::MissingField("key"));
    }
    if object_key.len() > 1024 {
        return Err(PostError::Malformed(
            "the key is longer than 1024 bytes".into(),
        ));
    }
    fields.set("key", object_key.clone());
    policy.check(&fields, &target.bucket, unix_now(config))?;
    let (min, max) = match policy.content_length_range() {
        Some((min, max)) => (min, max.min(config.max_file_size)),
        None => (0, config.max_file_size),
    };

    let verdict = StreamVerdict::default();
    let (body, length) = take_file(config, file, (min, max), verdict.clone()).await?;

    let mut headers = HeaderMap::new();
    for name in [header::HOST, header::USER_AGENT] {
        if let Some(value) = parts.headers.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    let mut signed = vec!["host".to_owned()];
    for (name, value) in fields.iter() {
        let Some(header_name) = forwarded_header(name) else {
            continue;
        };
        let value = HeaderValue::from_str(value)
            .map_err(|_| PostError::Malformed(format!("field {name} is not a header value")))?;
        signed.push(header_name.as_str().to_owned());
        headers.insert(header_name, value);
    }
    headers.insert(header::CONTENT_LENGTH, length.into());
    signed.sort_unstable();
    signed.dedup();
    let signed_headers =
        SignedHeaders::parse(&signed.join(";")).map_err(|e| PostError::Malformed(e.to_string()))?;

    let base = parts.uri.path().trim_end_matches('/');
    let path = format!("{base}/{}", uri_encode(object_key.as_bytes(), true));
    let mut put = Request::builder()
        .method(Method::PUT)
        .uri(path.as_str())
        .version(parts.version)
        .body(body)
        .map_err(|e| PostError::Malformed(e.to_string()))?;
    *put.headers_mut() = headers;
    *put.extensions_mut() = parts.extensions;
    let credential: Arc<Credential> = Arc::new(credential);
    if let Some(observed) = put.extensions().get::<Observed>() {
        observed.record(|facts| {
            facts.access_key_id = Some(scope.access_key_id.clone());
            facts.identity = Some(credential.identity.name().to_owned());
            facts.signature_timestamp = Some(date.to_string());
            facts.decoded_content_length = Some(length);
            facts.object_key = Some(object_key.clone());
            facts.object_content_type = fields.get("content-type").map(str::to_owned);
        });
    }
    put.extensions_mut().insert(Verified {
        access_key_id: scope.access_key_id.clone(),
        identity: credential.identity.clone(),
        region: scope.region.clone(),
        service: scope.service.clone(),
        signing_time: date,
        signed_headers,
        payload: PayloadMode::Unsigned,
        auth: AuthKind::PostPolicy,
        content_length: Some(length),
        decoded_content_length: None,
        seed_signature: expected,
        chunk_digests: None,
        original_content_encoding: None,
        credential,
    });

    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let outcome = Outcome {
        bucket: target.bucket.clone(),
        key: object_key,
        location: format!("{}://{host}{path}", config.scheme()),
        redirect: fields
            .get("success_action_redirect")
            .or_else(|| fields.get("redirect"))
            .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
            .map(str::to_owned),
        status: fields.get("success_action_status").map(str::to_owned),
        verdict,
    };
    Ok((put, outcome))
}

fn required<'f>(fields: &'f FormFields, name: &'static str) -> Result<&'f str, PostError> {
    fields.get(name).ok_or(PostError::MissingField(name))
}

fn unix_now(config: &PostConfig) -> i64 {
    AmzDate::from_system_time(config.now()).unix_seconds()
}

/// The `PUT` header a form field becomes, if any: the object's own headers
/// and metadata S3 takes from a form.
fn forwarded_header(field: &str) -> Option<HeaderName> {
    const AS_IS: [&str; 10] = [
        "content-type",
        "cache-control",
        "content-disposition",
        "content-encoding",
        "expires",
        "x-amz-storage-class",
        "x-amz-website-redirect-location",
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
        "x-amz-server-side-encryption-context",
    ];
    if field == "acl" {
        return Some(HeaderName::from_static("x-amz-acl"));
    }
    if AS_IS.contains(&field) || field.starts_with("x-amz-meta-") {
        return HeaderName::from_bytes(field.as_bytes()).ok();
    }
    None
}

/// The file as a body of known length: streamed when the part stated its
/// length (refused at once if that is outside the range), else spooled to
/// a temporary file, never past `max` bytes.
async fn take_file(
    config: &PostConfig,
    file: FilePart<'static>,
    (min, max): (u64, u64),
    verdict: StreamVerdict,
) -> Result<(PostBody, u64), PostError> {
    let FilePart {
        mut field,
        declared_length,
        ..
    } = file;
    if let Some(declared) = declared_length {
        if declared > max {
            return Err(PostError::TooLarge { max });
        }
        if declared < min {
            return Err(PostError::TooSmall { min });
        }
        return Ok((
            PostBody::streamed(field, declared, (min, max), verdict),
            declared,
        ));
    }
    let spool_error = |e: std::io::Error| PostError::Spool(e.to_string());
    let std_file = match &config.spool_dir {
        Some(dir) => tempfile::tempfile_in(dir),
        None => tempfile::tempfile(),
    }
    .map_err(spool_error)?;
    let mut spool = tokio::fs::File::from_std(std_file);
    let mut length = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(PostError::from_multer)? {
        length += chunk.len() as u64;
        if length > max {
            return Err(PostError::TooLarge { max });
        }
        spool.write_all(&chunk).await.map_err(spool_error)?;
    }
    if length < min {
        return Err(PostError::TooSmall { min });
    }
    spool.flush().await.map_err(spool_error)?;
    spool
        .seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(spool_error)?;
    Ok((PostBody::spooled(spool, length), length))
}

/// Marks a refusal for the request log and metrics.
pub(crate) fn rejection(error: &PostError) -> Rejection {
    Rejection {
        layer: "post",
        reason: error.reason(),
    }
}
