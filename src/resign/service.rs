//! [`Resign`]: rewrites the target, drops what must not travel, and signs
//! the request for the upstream.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use tower_service::Service;

use super::body::{FramingPlan, ResignBody};
use super::future::ResponseFuture;
use super::layer::{Addressing, CredentialsSource, ResignConfig};
use crate::body::ResponseBody;
use crate::hop_by_hop::{is_hop_by_hop, remove_hop_by_hop};
use crate::s3error::{S3Error, S3ErrorCode};
use crate::sigv4::auth::credential_scope;
use crate::sigv4::{
    authorization_value, sign_request, AmzDate, CanonicalRequest, ChunkSigner, PayloadMode,
    UriEncoding,
};
use crate::verified::{AuthKind, Verified};

/// The service made by [`ResignLayer`](super::ResignLayer).
pub struct Resign<S> {
    inner: S,
    config: Arc<ResignConfig>,
}

impl<S> Resign<S> {
    pub(crate) fn new(inner: S, config: Arc<ResignConfig>) -> Self {
        Resign { inner, config }
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
    /// ([`ResignLayer::new`](super::ResignLayer::new)).
    pub fn layer(upstream: super::Upstream) -> super::ResignLayer {
        super::ResignLayer::new(upstream)
    }
}

impl<S: Clone> Clone for Resign<S> {
    fn clone(&self) -> Self {
        Resign {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Resign<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resign")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Resign<S>
where
    S: Service<Request<ResignBody<ReqBody>>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let resource = request.uri().path().to_owned();
        let is_head = request.method() == http::Method::HEAD;
        match resign(&self.config, request) {
            Ok(request) => ResponseFuture::inner(self.inner.call(request)),
            Err(error) => {
                tracing::warn!("request not re-signed: {error}");
                ResponseFuture::rejected(&error, &resource, is_head)
            }
        }
    }
}

/// Request headers never forwarded beside the hop-by-hop ones: `Expect`
/// belongs to the client's exchange with this proxy (a signer must not cover
/// it), and the client's `Authorization` is replaced by a new signature.
const NEVER_FORWARDED: [&str; 2] = ["expect", "authorization"];

/// Headers forwarded but never signed: they may be rewritten on the way
/// (compression negotiation, tracing, client identification).
const NEVER_SIGNED: [&str; 4] = [
    "accept-encoding",
    "user-agent",
    "x-amzn-trace-id",
    "content-length",
];

/// Presigned-URL parameters, replaced by header auth upstream.
const PRESIGN_PARAMS: [&str; 8] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "X-Amz-Content-Sha256",
];

/// Borrowed from the layer's settings or the request's [`Verified`]: the
/// re-signer runs on every request and copies nothing it only reads.
struct SigningIdentity<'a> {
    access_key_id: &'a str,
    secret: &'a crate::credentials::Secret,
    session_token: Option<&'a crate::credentials::Secret>,
}

fn choose_credentials<'a>(
    config: &'a ResignConfig,
    verified: Option<&'a Verified>,
) -> Result<SigningIdentity<'a>, S3Error> {
    match (&config.credentials, verified) {
        (CredentialsSource::Fixed(fixed), _) => Ok(SigningIdentity {
            access_key_id: &fixed.access_key_id,
            secret: &fixed.secret,
            session_token: fixed.session_token.as_ref(),
        }),
        (CredentialsSource::Client, Some(verified)) => Ok(SigningIdentity {
            access_key_id: &verified.access_key_id,
            secret: &verified.credential.secret,
            session_token: verified.credential.session_token.as_ref(),
        }),
        (CredentialsSource::Mapped, Some(verified)) => match &verified.credential.upstream {
            Some(upstream) => Ok(SigningIdentity {
                access_key_id: &upstream.access_key_id,
                secret: &upstream.secret,
                session_token: upstream.session_token.as_ref(),
            }),
            None => Err(S3Error::new(
                S3ErrorCode::AccessDenied,
                "No upstream credentials are mapped to this access key.",
            )),
        },
        (_, None) => Err(S3Error::new(
            S3ErrorCode::AccessDenied,
            "The request was not verified, so it cannot be signed with the client's credentials.",
        )),
    }
}

/// Splits the client's addressing into (bucket, key path starting with `/`).
fn client_target<'a>(
    config: &ResignConfig,
    host: Option<&str>,
    path: &'a str,
) -> (Option<String>, &'a str) {
    let target = config.client_addressing.target(host, path);
    (target.bucket, target.key_path)
}

fn strip_presign_params(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !pair.is_empty() && !PRESIGN_PARAMS.contains(&name)
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn resign<B>(
    config: &ResignConfig,
    request: Request<B>,
) -> Result<Request<ResignBody<B>>, S3Error> {
    let (mut parts, body) = request.into_parts();
    // Borrowed, not cloned: the extensions are not touched until the end.
    let verified = parts.extensions.get::<Verified>();
    let identity = choose_credentials(config, verified)?;

    // Target: scheme and host of the upstream, bucket placed as it expects.
    let client_host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    let (bucket, key_path) = client_target(config, client_host, parts.uri.path());
    let upstream_authority = config.upstream.authority().as_str();
    let (authority, path) = match (config.addressing, &bucket) {
        (Addressing::VirtualHosted, Some(bucket)) => (
            format!("{bucket}.{upstream_authority}"),
            if key_path.is_empty() {
                "/".to_owned()
            } else {
                key_path.to_owned()
            },
        ),
        (_, Some(bucket)) => (
            upstream_authority.to_owned(),
            format!("/{bucket}{key_path}"),
        ),
        (_, None) => (upstream_authority.to_owned(), "/".to_owned()),
    };
    let query = match (parts.uri.query(), verified.map(|v| v.auth)) {
        (Some(query), Some(AuthKind::Presigned { .. })) => Some(strip_presign_params(query)),
        (Some(query), _) => Some(query.to_owned()),
        (None, _) => None,
    }
    .filter(|q| !q.is_empty());
    let path_and_query = match &query {
        Some(query) => format!("{path}?{query}"),
        None => path.clone(),
    };
    parts.uri = Uri::builder()
        .scheme(config.upstream.scheme().clone())
        .authority(authority.as_str())
        .path_and_query(path_and_query.as_str())
        .build()
        .map_err(|_| {
            S3Error::new(
                S3ErrorCode::InvalidRequest,
                "The request target cannot be addressed on the upstream.",
            )
        })?;

    // Headers: drop what belongs to this hop, then decide what gets signed.
    remove_hop_by_hop(&mut parts.headers);
    // The HTTP version belongs to the hop as well: a client's HTTP/2
    // request goes on as HTTP/1.1, which any S3 upstream speaks (hyper's
    // client refuses an HTTP/2 request on an HTTP/1 connection; on an
    // HTTP/2 one it sends HTTP/2 whatever the request says).
    parts.version = http::Version::HTTP_11;
    for name in NEVER_FORWARDED {
        parts.headers.remove(name);
    }
    for name in ["x-amz-date", "x-amz-security-token", "x-amz-content-sha256"] {
        parts.headers.remove(name);
    }
    parts.headers.insert(
        header::HOST,
        HeaderValue::from_str(&authority)
            .map_err(|_| S3Error::new(S3ErrorCode::InvalidRequest, "Invalid upstream host."))?,
    );

    let payload = match verified {
        Some(verified) => match verified.auth {
            AuthKind::Presigned { .. } if !verified.payload.is_chunked() => {
                if matches!(verified.payload, PayloadMode::Hex(_)) {
                    verified.payload
                } else {
                    PayloadMode::Unsigned
                }
            }
            _ => verified.payload,
        },
        None => PayloadMode::Unsigned,
    };
    let date = AmzDate::from_system_time((config.clock)());
    let date_text = date.basic_form();
    parts.headers.insert(
        "x-amz-date",
        HeaderValue::from_str(date_text.as_str()).expect("ASCII date"),
    );
    let payload_hash = payload.header_value();
    parts.headers.insert(
        "x-amz-content-sha256",
        HeaderValue::from_str(&payload_hash).expect("ASCII payload mode"),
    );
    if let Some(token) = identity.session_token {
        let value = HeaderValue::from_str(token.expose()).map_err(|_| {
            S3Error::new(
                S3ErrorCode::InternalError,
                "The upstream session token is not a valid header value.",
            )
        })?;
        parts.headers.insert("x-amz-security-token", value);
    }

    let plan = if payload.is_chunked() {
        let verified = verified.expect("chunked payloads come only from verified requests");
        let digests = verified.chunk_digests.clone().ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InternalError,
                "ResignLayer needs SigV4VerifyLayer::publish_chunk_digests(true) to re-frame aws-chunked payloads.",
            )
        })?;
        // The upstream gets the client's framing back: same encoding, same
        // length (same chunk boundaries, same signature lengths).
        let encoding = verified
            .original_content_encoding
            .clone()
            .unwrap_or_else(|| HeaderValue::from_static("aws-chunked"));
        parts.headers.insert(header::CONTENT_ENCODING, encoding);
        match verified.content_length {
            Some(length) => {
                parts.headers.insert(header::CONTENT_LENGTH, length.into());
            }
            None => {
                parts.headers.remove(header::CONTENT_LENGTH);
            }
        }
        Some((payload, digests, verified.content_length))
    } else {
        None
    };

    // Sign what the client signed (or, unverified, every end-to-end header),
    // plus what SigV4 requires; unsigned client headers travel unsigned.
    // Verified, the client's signed names still present plus every x-amz-*
    // header (headers the client signed but that were rewritten for this
    // hop are re-added above, content-encoding; x-amz-* must always be
    // signed). The header names are held as `HeaderName`s (a reference
    // count, no copy): the map itself gets the authorization header below.
    let held: Vec<header::HeaderName> = parts
        .headers
        .keys()
        .filter(|name| verified.is_none() || name.as_str().starts_with("x-amz-"))
        .cloned()
        .collect();
    let mut signed: Vec<&str> = verified.map_or_else(Vec::new, |verified| {
        verified
            .signed_headers
            .names()
            .into_iter()
            .filter(|name| parts.headers.contains_key(*name))
            .collect()
    });
    signed.extend(held.iter().map(header::HeaderName::as_str));
    signed.retain(|name| {
        !NEVER_SIGNED.contains(name) && !NEVER_FORWARDED.contains(name) && !is_hop_by_hop(name)
    });
    signed.extend(["host", "x-amz-date", "x-amz-content-sha256"]);
    if identity.session_token.is_some() {
        signed.push("x-amz-security-token");
    }
    signed.sort_unstable();
    signed.dedup();

    let date_stamp = date_text.date_stamp();
    let scope = credential_scope(date_stamp, &config.region, &config.service);
    let key = config.key_cache.get(
        identity.secret.expose(),
        date_stamp,
        &config.region,
        &config.service,
    );
    let canonical = CanonicalRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        skip_query_param: None,
        headers: &parts.headers,
        authority: None,
        signed_headers: &signed,
        payload_hash: &payload_hash,
        uri_encoding: UriEncoding::S3,
    };
    let signature = sign_request(&canonical, &key, &date, &scope).signature;
    let authorization = authorization_value(
        identity.access_key_id,
        &scope,
        &signed.join(";"),
        &signature,
    );
    parts.headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&authorization).expect("ASCII authorization"),
    );

    let body = match plan {
        None => ResignBody::passthrough(body),
        Some((mode, digests, encoded_len)) => ResignBody::reframe(
            body,
            FramingPlan {
                mode,
                signer: mode
                    .has_chunk_signatures()
                    .then(|| ChunkSigner::new(key.clone(), &date, &scope, &signature)),
                digests,
                encoded_len,
            },
        ),
    };
    if let Some(observed) = parts.extensions.get::<crate::verified::Observed>() {
        let url = parts.uri.to_string();
        observed.record(|facts| facts.upstream_url = Some(url));
    }
    Ok(Request::from_parts(parts, body))
}

/// Removes every hop-by-hop header from a response before it goes back to
/// the client (useful to upstream clients that return raw responses).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resign::Upstream;

    fn config(suffix: Option<&str>) -> ResignConfig {
        let mut layer_config = crate::resign::ResignLayer::new(
            Upstream::parse("https://s3.us-west-004.backblazeb2.com").unwrap(),
        );
        if let Some(suffix) = suffix {
            layer_config = layer_config.client_virtual_host_suffix(suffix);
        }
        layer_config.into_config()
    }

    #[test]
    fn finds_bucket_and_key_in_both_addressing_styles() {
        let path_style = config(None);
        assert_eq!(
            client_target(&path_style, Some("proxy"), "/bucket/a/b"),
            (Some("bucket".into()), "/a/b")
        );
        assert_eq!(
            client_target(&path_style, Some("proxy"), "/bucket"),
            (Some("bucket".into()), "")
        );
        assert_eq!(
            client_target(&path_style, Some("proxy"), "/bucket/"),
            (Some("bucket".into()), "/")
        );
        assert_eq!(client_target(&path_style, Some("proxy"), "/"), (None, "/"));
        let vhost = config(Some("proxy.example"));
        assert_eq!(
            client_target(&vhost, Some("photos.proxy.example:8080"), "/a//b"),
            (Some("photos".into()), "/a//b")
        );
        assert_eq!(
            client_target(&vhost, Some("proxy.example"), "/photos/a"),
            (Some("photos".into()), "/a")
        );
    }

    #[test]
    fn presign_parameters_are_removed_and_others_kept() {
        assert_eq!(
            strip_presign_params("X-Amz-Algorithm=AWS4-HMAC-SHA256&response-content-type=text%2Fplain&X-Amz-Signature=ab&versionId=3"),
            "response-content-type=text%2Fplain&versionId=3"
        );
    }
}
