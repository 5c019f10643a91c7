//! [`B2Native`]: routes native API requests to the B2 upstream (rewriting
//! the URLs in its answers, verifying uploads, emitting events) and every
//! other request to the inner service.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use serde_json::Value;
use tower_service::Service;

use super::answer::{learn_buckets, rewrite_authorize, rewrite_upload_url, UPLOAD_PATH};
use super::body::{FailureSlot, Sha1Claim, UploadBody, VerifiedSha1};
use super::error::B2Error;
use super::events::{self, NativeOp, RequestFacts};
use super::layer::Settings;
use super::state::{Account, UploadKind};
use crate::body::BoxError;
use crate::notify::classify::query_value;
use crate::s3error::RequestId;
use crate::sigv4::canonical::percent_decode;
use crate::verified::{ClientAddr, Rejection};

/// Response body of a native request: the upstream's, streamed, or a JSON
/// document the proxy wrote (a rewritten answer or its own error).
pub type NativeBody<UB> = Either<UB, Full<Bytes>>;

/// The service made by [`B2NativeLayer`](super::B2NativeLayer).
#[derive(Clone)]
pub struct B2Native<S, U> {
    inner: S,
    upstream: U,
    settings: Arc<Settings>,
}

impl<S, U> std::fmt::Debug for B2Native<S, U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("B2Native")
            .field("realm", &self.settings.realm)
            .finish_non_exhaustive()
    }
}

impl<S, U> B2Native<S, U> {
    pub(crate) fn new(inner: S, upstream: U, settings: Arc<Settings>) -> Self {
        B2Native {
            inner,
            upstream,
            settings,
        }
    }

    /// A layer authorizing against `realm` and forwarding through
    /// `upstream` (see [`B2NativeLayer::new`](super::B2NativeLayer::new)).
    pub fn layer(realm: impl Into<String>, upstream: U) -> super::B2NativeLayer<U> {
        super::B2NativeLayer::new(realm, upstream)
    }

    /// The service that answers every other request.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service that answers every other request, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the service that answers every other
    /// request.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Whether a request is for the B2 native API rather than S3: a path under
/// `/b2api/` or `/file/`, and no S3 credentials (an `AWS4-HMAC-SHA256`
/// `Authorization` header, a presigned query) nor a browser form upload.
/// A path-style S3 bucket named `b2api` or `file` stays reachable through
/// S3: its requests are signed.
pub fn is_native_request<B>(request: &Request<B>) -> bool {
    let path = request.uri().path();
    if !(path.starts_with("/b2api/") || path.starts_with("/file/")) {
        return false;
    }
    let s3_auth = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes().starts_with(b"AWS"));
    let presigned = request.uri().query().is_some_and(|q| {
        q.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            name.eq_ignore_ascii_case("X-Amz-Algorithm")
                || name.eq_ignore_ascii_case("X-Amz-Signature")
                || name.eq_ignore_ascii_case("AWSAccessKeyId")
        })
    });
    let form = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"multipart/form-data"));
    !(s3_auth || presigned || form)
}

pin_project! {
    /// Response future of [`B2Native`].
    pub struct ResponseFuture<F, UB> {
        #[pin]
        kind: Kind<F, UB>,
    }
}

type NativeFuture<UB> = Pin<Box<dyn Future<Output = Response<NativeBody<UB>>> + Send>>;

pin_project! {
    #[project = KindProj]
    enum Kind<F, UB> {
        Inner { #[pin] future: F },
        Native { future: NativeFuture<UB> },
    }
}

impl<F, SB, UB> Future for ResponseFuture<F, UB>
where
    F: Future<Output = Result<Response<SB>, Infallible>>,
{
    type Output = Result<Response<Either<SB, NativeBody<UB>>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future
                .poll(cx)
                .map(|r| r.map(|response| response.map(Either::Left))),
            KindProj::Native { future } => future
                .as_mut()
                .poll(cx)
                .map(|response| Ok(response.map(Either::Right))),
        }
    }
}

impl<S, U, B, SB, UB> Service<Request<B>> for B2Native<S, U>
where
    S: Service<Request<B>, Response = Response<SB>, Error = Infallible>,
    U: Service<Request<UploadBody<B>>, Response = Response<UB>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    U::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    UB: Body<Data = Bytes> + Send + 'static,
    UB::Error: Into<BoxError>,
{
    type Response = Response<Either<SB, NativeBody<UB>>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, UB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !self.settings.enabled || !is_native_request(&request) {
            return ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(request),
                },
            };
        }
        let call = NativeCall {
            upstream: self.upstream.clone(),
            settings: self.settings.clone(),
        };
        ResponseFuture {
            kind: Kind::Native {
                future: Box::pin(call.run(request)),
            },
        }
    }
}

/// Where a native request goes, read from its path.
enum Route {
    Authorize,
    Api(String),
    Upload(String),
    DownloadById,
    DownloadByName { bucket: String },
}

fn route(path: &str) -> Option<Route> {
    if let Some(id) = path.strip_prefix(UPLOAD_PATH) {
        return (!id.is_empty() && !id.contains('/')).then(|| Route::Upload(id.to_owned()));
    }
    if let Some(rest) = path.strip_prefix("/file/") {
        let (bucket, name) = rest.split_once('/')?;
        if bucket.is_empty() || name.is_empty() {
            return None;
        }
        return Some(Route::DownloadByName {
            bucket: String::from_utf8_lossy(&percent_decode(bucket, false)).into_owned(),
        });
    }
    let rest = path.strip_prefix("/b2api/")?;
    let (version, name) = rest.split_once('/')?;
    let is_version = version.len() > 1
        && version.starts_with('v')
        && version[1..].bytes().all(|b| b.is_ascii_digit());
    if !is_version || !name.starts_with("b2_") || name.contains('/') {
        return None;
    }
    Some(match name {
        "b2_authorize_account" => Route::Authorize,
        "b2_download_file_by_id" => Route::DownloadById,
        other => Route::Api(other.to_owned()),
    })
}

/// One native request in progress.
struct NativeCall<U> {
    upstream: U,
    settings: Arc<Settings>,
}

type Answer<UB> = Response<NativeBody<UB>>;

fn fixed<UB>(mut parts: http::response::Parts, body: Bytes) -> Answer<UB> {
    // The length changed with the rewrite; the body states its own.
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    Response::from_parts(parts, Either::Right(Full::new(body)))
}

fn refuse<UB>(error: &B2Error, reason: &'static str) -> Answer<UB> {
    tracing::debug!(code = error.code(), "B2 native request refused: {error}");
    let mut response = error.to_response().map(|b| Either::Right(Full::new(b)));
    response.extensions_mut().insert(Rejection {
        layer: "b2native",
        reason,
    });
    response
}

/// The token a request carries: its `Authorization` header, else (for
/// downloads) the `Authorization` query parameter.
fn token<B>(request: &Request<B>, from_query: bool) -> Option<String> {
    if let Some(value) = request.headers().get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?.trim();
        // B2 takes the bare token; some clients add the scheme.
        let value = value.strip_prefix("Bearer ").unwrap_or(value);
        return (!value.is_empty()).then(|| value.to_owned());
    }
    if from_query {
        return query_value(request.uri().query(), "Authorization").filter(|v| !v.is_empty());
    }
    None
}

/// The application key id of a Basic `Authorization` (never the key).
fn basic_key_id(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    // The key is dropped here, with `text`.
    text.split_once(':').map(|(id, _)| id.to_owned())
}

/// The upstream URL as events carry it, less an `Authorization` query
/// parameter (a download's token).
fn event_url(uri: &Uri) -> String {
    let base = format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    );
    let Some(query) = uri.query() else {
        return base;
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            !name.eq_ignore_ascii_case("Authorization")
        })
        .collect();
    if kept.is_empty() {
        base
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

fn join(base: &str, request_uri: &Uri) -> Result<Uri, B2Error> {
    let path_and_query = request_uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    format!("{base}{path_and_query}")
        .parse()
        .map_err(|_| B2Error::BadUpstreamAnswer {
            operation: "routing".into(),
            reason: "an upstream URL is not a valid URI".into(),
        })
}

/// The request to the upstream: the client's method and headers (less
/// `Host`, which the client library sets from the new URI) to `uri`.
fn upstream_request<T>(parts: &http::request::Parts, uri: Uri, body: T) -> Request<T> {
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = parts.headers.clone();
    request.headers_mut().remove(http::header::HOST);
    if let Some(id) = parts.extensions.get::<RequestId>() {
        request.extensions_mut().insert(id.clone());
    }
    request
}

async fn read_limited<T>(body: T, limit: usize) -> Result<Bytes, B2Error>
where
    T: Body<Data = Bytes>,
    T::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(B2Error::JsonTooLarge { limit })
        }
        Err(_) => Err(B2Error::BadJson),
    }
}

impl<U> NativeCall<U> {
    fn public_base<B>(&self, request: &Request<B>) -> String {
        if let Some(url) = &self.settings.public_url {
            return url.clone();
        }
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                request
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "localhost".to_owned());
        let scheme = if self.settings.https { "https" } else { "http" };
        format!("{scheme}://{host}")
    }

    fn emit(&self, event: crate::notify::Event) {
        if let Some(emitter) = &self.settings.emitter {
            emitter.emit(event);
        }
    }

    async fn run<B, UB>(mut self, request: Request<B>) -> Answer<UB>
    where
        U: Service<Request<UploadBody<B>>, Response = Response<UB>, Error = Infallible>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        UB: Body<Data = Bytes> + Send + 'static,
        UB::Error: Into<BoxError>,
    {
        let Some(route) = route(request.uri().path()) else {
            return refuse(&B2Error::NotFound, "b2_not_found");
        };
        let public = self.public_base(&request);
        let mut facts = RequestFacts {
            method: request.method().as_str().to_owned(),
            path: request.uri().path().to_owned(),
            request_id: request
                .extensions()
                .get::<RequestId>()
                .map(|id| id.as_str().to_owned()),
            source_ip: request.extensions().get::<ClientAddr>().map(|a| a.0.ip()),
            started: Instant::now(),
            key_id: None,
            content_length: None,
        };
        let result = match route {
            Route::Authorize => self.authorize(request, &public).await,
            Route::Api(name) => self.api(request, &name, &public, facts).await,
            Route::Upload(id) => self.upload(request, &id, facts).await,
            Route::DownloadById => {
                self.download(request, NativeOp::DownloadById, None, &mut facts)
                    .await
            }
            Route::DownloadByName { bucket } => {
                self.download(request, NativeOp::DownloadByName, Some(bucket), &mut facts)
                    .await
            }
        };
        result.unwrap_or_else(|(error, reason)| refuse(&error, reason))
    }

    async fn send<B, UB>(&mut self, request: Request<UploadBody<B>>) -> Response<UB>
    where
        U: Service<Request<UploadBody<B>>, Response = Response<UB>, Error = Infallible>,
    {
        let Ok(()) = poll_fn(|cx| self.upstream.poll_ready(cx)).await;
        let Ok(response) = self.upstream.call(request).await;
        response
    }

    /// Reads a JSON call's body (bounded) and sends it on to `base` with the
    /// request's path: the upstream URL, its answer (a gateway error
    /// already turned into B2's) and the body sent.
    async fn forward_json<B, UB>(
        &mut self,
        request: Request<B>,
        base: &str,
    ) -> Result<(Uri, Response<UB>, Bytes), (B2Error, &'static str)>
    where
        U: Service<Request<UploadBody<B>>, Response = Response<UB>, Error = Infallible>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let body = read_limited(body, self.settings.max_json_bytes)
            .await
            .map_err(|e| (e, "b2_bad_request"))?;
        let uri = join(base, &parts.uri).map_err(|e| (e, "b2_bad_route"))?;
        let response = self
            .send(upstream_request(
                &parts,
                uri.clone(),
                UploadBody::whole(body.clone()),
            ))
            .await;
        match gateway_error(&response, &uri) {
            Some(error) => Err((error, "b2_upstream_unreachable")),
            None => Ok((uri, response, body)),
        }
    }
}

/// A gateway error the upstream client made up (the crate's
/// `UpstreamClient` answers an unreachable or silent upstream with S3 XML),
/// as B2's JSON: the native API never answers in XML, so an XML 502/503/504
/// is the client's own.
fn gateway_error<UB>(response: &Response<UB>, uri: &Uri) -> Option<B2Error> {
    let status = response.status();
    let xml = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes()
                .windows(3)
                .any(|w| w.eq_ignore_ascii_case(b"xml"))
        });
    let is_gateway = matches!(status.as_u16(), 502..=504);
    (is_gateway && xml).then(|| B2Error::Gateway {
        status: status.as_u16(),
        upstream: uri.authority().map_or_else(String::new, |a| a.to_string()),
    })
}

impl<U> NativeCall<U> {
    /// Reads an answer whole (bounded) as JSON; `None` for a body that is
    /// not JSON (an error page of something in between).
    async fn read_answer<UB>(
        limit: usize,
        response: Response<UB>,
        operation: &str,
    ) -> Result<(http::response::Parts, Bytes, Option<Value>), (B2Error, &'static str)>
    where
        UB: Body<Data = Bytes>,
        UB::Error: Into<BoxError>,
    {
        let (parts, body) = response.into_parts();
        let bytes = read_limited(body, limit).await.map_err(|e| {
            let error = match e {
                B2Error::BadJson => B2Error::BadUpstreamAnswer {
                    operation: operation.to_owned(),
                    reason: "the body ended early".into(),
                },
                other => other,
            };
            (error, "b2_bad_answer")
        })?;
        let json = serde_json::from_slice(&bytes).ok();
        Ok((parts, bytes, json))
    }

    async fn authorize<B, UB>(
        &mut self,
        request: Request<B>,
        public: &str,
    ) -> Result<Answer<UB>, (B2Error, &'static str)>
    where
        U: Service<Request<UploadBody<B>>, Response = Response<UB>, Error = Infallible>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        UB: Body<Data = Bytes> + Send + 'static,
        UB::Error: Into<BoxError>,
    {
        let key_id = basic_key_id(request.headers());
        let settings = self.settings.clone();
        let (_, response, _) = self.forward_json(request, &settings.realm).await?;
        let (parts, bytes, json) = Self::read_answer(
            self.settings.max_json_bytes,
            response,
            "b2_authorize_account",
        )
        .await?;
        let Some(mut json) = json.filter(|_| parts.status.is_success()) else {
            return Ok(fixed(parts, bytes));
        };
        let routes = &self.settings.routes;
        let Some((token, account)) = rewrite_authorize(&mut json, public, key_id, routes) else {
            return Err((
                B2Error::BadUpstreamAnswer {
                    operation: "b2_authorize_account".into(),
                    reason: "no authorizationToken or apiUrl".into(),
                },
                "b2_bad_answer",
            ));
        };
        routes.remember_token(&token, account);
        Ok(fixed(parts, Bytes::from(json.to_string())))
    }

    fn account_for<B>(&self, request: &Request<B>) -> Result<Account, (B2Error, &'static str)> {
        let token = token(request, false).ok_or((B2Error::MissingAuthorization, "b2_no_token"))?;
        self.settings
            .routes
            .account(&token)
            .ok_or((B2Error::UnknownToken, "b2_unknown_token"))
    }

    async fn api<B, UB>(
        &mut self,
        request: Request<B>,
        name: &str,
        public: &str,
        mut facts: RequestFacts,
    ) -> Result<Answer<UB>, (B2Error, &'static str)>
    where
        U: Service<Request<UploadBody<B>>, Response = Response<UB>, Error = Infallible>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        UB: Body<Data = Bytes> + Send + 'static,
        UB::Error: Into<BoxError>,
    {
        let account = self.account_for(&request)?;
        facts.key_id = account.key_id.clone();
        let (uri, response, body) = self.forward_json(request, &account.api_url).await?;
        facts.path = event_url(&uri);
        let request_json: Option<Value> = serde_json::from_slice(&body).ok();

        let op = NativeOp::from_api_name(name);
        let rewrites = matches!(
            name,
            "b2_get_upload_url"
                | "b2_get_upload_part_url"
                | "b2_list_buckets"
                | "b2_create_bucket"
                | "b2_update_bucket"
                | "b2_get_download_authorization"
        );
        if op.is_none() && !rewrites {
            let (parts, body) = response.into_parts();
            return Ok(Response::from_parts(parts, Either::Left(body)));
        }
        let (parts, bytes, json) =
            Self::read_answer(self.settings.max_json_bytes, response, name).await?;
        let status = parts.status;
        if let Some(op) = op {
            let event = events::from_answer(
                op,
                &facts,
                status.as_u16(),
                json.as_ref(),
                request_json.as_ref(),
                &self.settings.routes,
            );
            self.emit(event);
        }
        let Some(mut json) = json.filter(|_| status.is_success()) else {
            return Ok(fixed(parts, bytes));
        };
        let routes = &self.settings.routes;
        match name {
            "b2_get_upload_url" | "b2_get_upload_part_url" => {
                let part = name == "b2_get_upload_part_url";
                if !rewrite_upload_url(
                    &mut json,
                    request_json.as_ref(),
                    part,
                    public,
                    account.key_id.clone(),
                    routes,
                ) {
                    return Err((
                        B2Error::BadUpstreamAnswer {
                            operation: name.to_owned(),
                            reason: "no usable uploadUrl".into(),
                        },
                        "b2_bad_answer",
                    ));
                }
            }
            "b2_get_download_authorization" => {
                // The download token routes to the same account.
                if let Some(token) = json.get("authorizationToken").and_then(Value::as_str) {
                    routes.remember_token(token, account.clone());
                }
                return Ok(fixed(parts, bytes));
            }
            "b2_list_buckets" | "b2_create_bucket" | "b2_update_bucket" => {
                learn_buckets(&json, routes);
                return Ok(fixed(parts, bytes));
            }
            _ => return Ok(fixed(parts, bytes)),
        }
        Ok(fixed(parts, Bytes::from(json.to_string())))
    }

    async fn upload<B, UB>(
        &mut self,
        request: Request<B>,
        id: &str,
        mut facts: RequestFacts,
    ) -> Result<Answer<UB>, (B2Error, &'static str)>
    where
        U: Service<Request<UploadBody<B>>, Response = Response<UB>, Error = Infallible>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        UB: Body<Data = Bytes> + Send + 'static,
        UB::Error: Into<BoxError>,
    {
        if request.method() != Method::POST {
            return Err((B2Error::MethodNotAllowed, "b2_method"));
        }
        let target = self
            .settings
            .routes
            .upload(id)
            .ok_or((B2Error::UnknownUploadUrl, "b2_unknown_upload_url"))?;
        // Everything is decided from the head, before a byte is read, so a
        // client waiting on `Expect: 100-continue` gets the refusal.
        let claim = request
            .headers()
            .get("x-bz-content-sha1")
            .ok_or(B2Error::BadSha1Header)
            .and_then(|v| Sha1Claim::parse(v.as_bytes()))
            .map_err(|e| (e, "b2_bad_sha1_header"))?;
        let declared: u64 = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or((B2Error::MissingContentLength, "b2_no_length"))?;
        if claim == Sha1Claim::AtEnd && declared < 40 {
            return Err((B2Error::TooShortForDigits, "b2_too_short"));
        }
        facts.key_id = target.key_id.clone();
        facts.content_length = Some(declared);
        // The upstream's upload URL is a capability (some embed a token in
        // the path): events name its origin only.
        facts.path = format!(
            "{}://{}",
            target.url.scheme_str().unwrap_or("https"),
            target.url.authority().map_or("", |a| a.as_str())
        );
        // For the event of a failed upload, whose answer names no file.
        let file_name = request
            .headers()
            .get("x-bz-file-name")
            .and_then(|v| v.to_str().ok())
            .map(|v| String::from_utf8_lossy(&percent_decode(v, true)).into_owned());
        let failure = FailureSlot::default();
        let verified = VerifiedSha1::default();
        let (parts, body) = request.into_parts();
        let body = UploadBody::checked(body, claim, declared, failure.clone(), verified.clone());
        let mut upstream = upstream_request(&parts, target.url.clone(), body);
        *upstream.method_mut() = Method::POST;
        let response = self.send(upstream).await;
        if let Some(error) = failure.take() {
            // The upstream saw an aborted body; what it answered to that is
            // not what the client needs to know.
            return Err((error, "b2_sha1_mismatch"));
        }
        if let Some(error) = gateway_error(&response, &target.url) {
            return Err((error, "b2_upstream_unreachable"));
        }
        let op = match target.kind {
            UploadKind::File { .. } => NativeOp::UploadFile,
            UploadKind::Part { .. } => NativeOp::UploadPart,
        };
        let (parts, bytes, json) =
            Self::read_answer(self.settings.max_json_bytes, response, "upload").await?;
        let request_facts = match &target.kind {
            UploadKind::File { bucket_id } => {
                serde_json::json!({"bucketId": bucket_id, "fileName": file_name})
            }
            UploadKind::Part { file_id } => serde_json::json!({"fileId": file_id}),
        };
        let mut event = events::from_answer(
            op,
            &facts,
            parts.status.as_u16(),
            json.as_ref(),
            Some(&request_facts),
            &self.settings.routes,
        );
        if event.checksum.is_none() {
            event.checksum = verified.get().map(|d| events::sha1_value(&d));
        }
        self.emit(event);
        Ok(fixed(parts, bytes))
    }

    async fn download<B, UB>(
        &mut self,
        request: Request<B>,
        op: NativeOp,
        bucket: Option<String>,
        facts: &mut RequestFacts,
    ) -> Result<Answer<UB>, (B2Error, &'static str)>
    where
        U: Service<Request<UploadBody<B>>, Response = Response<UB>, Error = Infallible>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        UB: Body<Data = Bytes> + Send + 'static,
        UB::Error: Into<BoxError>,
    {
        let base = match token(&request, true) {
            Some(token) => {
                let account = self
                    .settings
                    .routes
                    .account(&token)
                    .ok_or((B2Error::UnknownToken, "b2_unknown_token"))?;
                facts.key_id = account.key_id.clone();
                account.download_url
            }
            None => self
                .settings
                .download_url
                .clone()
                .ok_or((B2Error::NoAnonymousDownload, "b2_no_token"))?,
        };
        let (parts, body) = request.into_parts();
        let uri = join(&base, &parts.uri).map_err(|e| (e, "b2_bad_route"))?;
        facts.path = event_url(&uri);
        let body = if parts.method == Method::POST {
            // b2_download_file_by_id may also be a POST with `{"fileId"}`.
            let bytes = read_limited(body, self.settings.max_json_bytes)
                .await
                .map_err(|e| (e, "b2_bad_request"))?;
            UploadBody::whole(bytes)
        } else {
            UploadBody::passthrough(body)
        };
        let response = self.send(upstream_request(&parts, uri.clone(), body)).await;
        if let Some(error) = gateway_error(&response, &uri) {
            return Err((error, "b2_upstream_unreachable"));
        }
        let event = events::from_download(
            op,
            facts,
            response.status().as_u16(),
            response.headers(),
            bucket,
        );
        self.emit(event);
        let (parts, body) = response.into_parts();
        Ok(Response::from_parts(parts, Either::Left(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, authorization: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().uri(path);
        if let Some(value) = authorization {
            builder = builder.header("authorization", value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn s3_requests_to_buckets_named_file_or_b2api_stay_s3() {
        assert!(is_native_request(&request(
            "/b2api/v4/b2_list_buckets",
            Some("tok")
        )));
        assert!(is_native_request(&request("/file/photos/a.jpg", None)));
        let sigv4 = "AWS4-HMAC-SHA256 Credential=AK/20261207/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
        assert!(!is_native_request(&request("/file/key", Some(sigv4))));
        assert!(!is_native_request(&request("/b2api/key", Some(sigv4))));
        assert!(!is_native_request(&request(
            "/file/key?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00",
            None
        )));
        assert!(!is_native_request(&request("/file", None)));
        assert!(!is_native_request(&request("/photos/file/x", Some("tok"))));
    }

    #[test]
    fn paths_name_their_operation() {
        assert!(matches!(
            route("/b2api/v2/b2_authorize_account"),
            Some(Route::Authorize)
        ));
        assert!(matches!(
            route("/b2api/v4/b2_download_file_by_id"),
            Some(Route::DownloadById)
        ));
        assert!(
            matches!(route("/b2api/v3/b2_hide_file"), Some(Route::Api(n)) if n == "b2_hide_file")
        );
        assert!(matches!(route("/b2api/s3tap/upload/abc"), Some(Route::Upload(id)) if id == "abc"));
        assert!(matches!(
            route("/file/my%20bucket/a/b.txt"),
            Some(Route::DownloadByName { bucket }) if bucket == "my bucket"
        ));
        for bad in [
            "/b2api/x/b2_hide_file",
            "/b2api/v3/list",
            "/b2api/v3",
            "/file/b",
            "/b2api/s3tap/upload/",
        ] {
            assert!(route(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn event_urls_drop_the_download_token() {
        let uri: Uri =
            "https://f001.example/b2api/v4/b2_download_file_by_id?fileId=9&Authorization=tok"
                .parse()
                .unwrap();
        assert_eq!(
            event_url(&uri),
            "https://f001.example/b2api/v4/b2_download_file_by_id?fileId=9"
        );
        let uri: Uri = "https://f001.example/file/b/k?Authorization=tok"
            .parse()
            .unwrap();
        assert_eq!(event_url(&uri), "https://f001.example/file/b/k");
    }

    #[test]
    fn basic_auth_gives_the_key_id_only() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Basic a2V5MTpzZWNyZXQ=".parse().unwrap());
        assert_eq!(basic_key_id(&headers).as_deref(), Some("key1"));
    }
}
