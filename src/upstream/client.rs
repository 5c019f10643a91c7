//! [`UpstreamClient`] and its builder.

use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use tower_service::Service;

use super::body::UpstreamBody;
use super::error::{BuildError, UpstreamError};
use super::future::{ErrorContext, ResponseFuture};
use super::resolve::Resolver;
use crate::body::BoxError;
use crate::hop_by_hop::remove_hop_by_hop;
use crate::https::{self, TlsSetupError};
use crate::s3error::RequestId;

// Boxing the request body once per request keeps the client (and its pool)
// one type for every body a caller may send; the bytes themselves still
// move without copies.
type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// Sends requests with absolute URIs to the upstream and streams the answers
/// back. See the [module docs](super).
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector<Resolver>>, RequestBody>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl UpstreamClient {
    /// A client with the default settings: webpki roots, 10 s to connect,
    /// 60 s to the response head, 90 s idle connections.
    pub fn new() -> Self {
        UpstreamClient::builder()
            .build()
            .expect("the default upstream client settings are valid")
    }

    /// A builder for a client with other settings.
    pub fn builder() -> UpstreamClientBuilder {
        UpstreamClientBuilder::default()
    }
}

impl Default for UpstreamClient {
    fn default() -> Self {
        UpstreamClient::new()
    }
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for UpstreamClient
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<UpstreamBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The pool opens connections on demand; there is nothing to wait for.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let (mut parts, body) = request.into_parts();
        let context = ErrorContext {
            uri: parts.uri.clone(),
            is_head: parts.method == http::Method::HEAD,
            request_id: RequestId::from_extensions_or_new(&parts.extensions),
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
        };
        if parts.uri.scheme().is_none() || parts.uri.authority().is_none() {
            let error = UpstreamError::InvalidRequest(format!(
                "the URI of a request to the upstream must be absolute, not {}",
                parts.uri.path()
            ));
            return ResponseFuture::failed(error, context);
        }
        remove_hop_by_hop(&mut parts.headers);
        let body = UnsyncBoxBody::new(body.map_err(Into::into));
        let response = self.client.request(Request::from_parts(parts, body));
        ResponseFuture::waiting(response, context)
    }
}

/// `host:port`, with the scheme's default port: what an operator needs to
/// find the upstream, and nothing of the path or query (presigned URLs carry
/// signatures there).
pub(super) fn host_and_port(uri: &Uri) -> String {
    let host = uri.host().unwrap_or("<no host>");
    let port = uri
        .port_u16()
        .or_else(|| match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        })
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!("{host}{port}")
}

/// Settings for an [`UpstreamClient`].
#[derive(Clone)]
pub struct UpstreamClientBuilder {
    connect_timeout: Duration,
    response_timeout: Duration,
    pool_idle_timeout: Option<Duration>,
    max_idle_per_host: usize,
    webpki_roots: bool,
    native_roots: bool,
    extra_roots: Vec<Vec<u8>>,
    http2: bool,
}

impl Default for UpstreamClientBuilder {
    fn default() -> Self {
        UpstreamClientBuilder {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            pool_idle_timeout: Some(Duration::from_secs(90)),
            max_idle_per_host: usize::MAX,
            webpki_roots: true,
            native_roots: false,
            extra_roots: Vec::new(),
            http2: true,
        }
    }
}

impl UpstreamClientBuilder {
    /// Gives up on opening a TCP connection after this long (default 10 s):
    /// `504 GatewayTimeout`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Gives up waiting for the response head after this long from the call,
    /// connecting and sending the body included (default 60 s):
    /// `504 GatewayTimeout`. The response body then streams without a limit.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Closes pooled connections idle for this long (default 90 s; `None`
    /// keeps them until the upstream closes them).
    pub fn pool_idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.pool_idle_timeout = timeout.into();
        self
    }

    /// Keeps at most this many idle connections per upstream host (default
    /// unbounded).
    pub fn max_idle_per_host(mut self, max: usize) -> Self {
        self.max_idle_per_host = max;
        self
    }

    /// Trusts the Mozilla roots compiled into the binary (default true).
    pub fn webpki_roots(mut self, enabled: bool) -> Self {
        self.webpki_roots = enabled;
        self
    }

    /// Also trusts the operating system's roots, read once at
    /// [`build`](Self::build) (default false).
    pub fn native_roots(mut self, enabled: bool) -> Self {
        self.native_roots = enabled;
        self
    }

    /// Also trusts the CA certificate(s) in this PEM text: for upstreams
    /// with a private CA (MinIO, a test server).
    pub fn add_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_roots.push(pem.into());
        self
    }

    /// Offers HTTP/2 by ALPN on HTTPS connections (default true); HTTP/1.1
    /// is always offered.
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }

    /// Builds the client. Fails when an added root certificate is not valid
    /// PEM or the system's roots cannot be read.
    pub fn build(self) -> Result<UpstreamClient, BuildError> {
        let tls_error = |e: TlsSetupError| match e {
            TlsSetupError::RootCertificate(m) => BuildError::RootCertificate(m),
            TlsSetupError::Tls(m) => BuildError::Tls(m),
        };
        let mut extra = Vec::new();
        if self.native_roots {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                if let Some(error) = found.errors.first() {
                    return Err(BuildError::Tls(format!(
                        "cannot read the system's root certificates: {error}"
                    )));
                }
            }
            // The system's store may hold certificates rustls cannot use;
            // they are skipped, as before, rather than failing the build.
            extra.extend(
                found
                    .certs
                    .into_iter()
                    .filter(|cert| rustls::RootCertStore::empty().add(cert.clone()).is_ok()),
            );
        }
        for pem in &self.extra_roots {
            extra.extend(https::pem_roots(pem).map_err(tls_error)?);
        }
        let roots = https::root_store(self.webpki_roots, extra).map_err(tls_error)?;
        let tls = https::client_config(roots).map_err(tls_error)?;
        let mut http = HttpConnector::new_with_resolver(Resolver::default());
        http.set_connect_timeout(Some(self.connect_timeout));
        let connector = https::connector(tls, http, self.http2);
        let client = https::pooled(connector, self.pool_idle_timeout, self.max_idle_per_host);
        Ok(UpstreamClient {
            client,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
        })
    }
}

impl fmt::Debug for UpstreamClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClientBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("max_idle_per_host", &self.max_idle_per_host)
            .field("webpki_roots", &self.webpki_roots)
            .field("native_roots", &self.native_roots)
            .field("extra_roots", &self.extra_roots.len())
            .field("http2", &self.http2)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_host_and_port_only() {
        let uri: Uri = "https://s3.example.com/bucket/key?X-Amz-Signature=abc"
            .parse()
            .unwrap();
        assert_eq!(host_and_port(&uri), "s3.example.com:443");
        let uri: Uri = "http://127.0.0.1:9000/b".parse().unwrap();
        assert_eq!(host_and_port(&uri), "127.0.0.1:9000");
    }

    #[test]
    fn rejects_garbage_root_certificates() {
        let error = UpstreamClient::builder()
            .add_root_certificate(b"not a certificate".to_vec())
            .build()
            .unwrap_err();
        assert!(matches!(error, BuildError::RootCertificate(_)), "{error}");
    }
}
