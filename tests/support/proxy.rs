//! The proxy under test: `SigV4VerifyLayer(publish_chunk_digests) →
//! ResignLayer → recorder → UpstreamClient` served on loopback over HTTP
//! and HTTPS, in front of a real upstream.

use std::path::Path;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;
use s3tap::body::BoxError;
use s3tap::credentials::{Credential, StaticCredentials, UpstreamCredentials};
use s3tap::resign::{strip_hop_by_hop, ResignLayer, Upstream};
use s3tap::verify::SigV4VerifyLayer;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

use super::clients::Creds;
use super::TestServer;

/// The key clients sign with when it is not the upstream's.
pub const CLIENT_KEY: &str = "CLIENTKEY";
/// Its secret.
pub const CLIENT_SECRET: &str = "client/secret+value/for-e2e";

/// Which key clients hold and which one the proxy signs upstream requests
/// with. Each variant carries the upstream's key.
#[derive(Clone, Debug)]
pub enum KeyMode {
    /// Clients hold the upstream's own key; the proxy verifies it and signs
    /// again with it (`sign_with_client_credentials`).
    ClientKeys(Creds),
    /// Clients hold [`CLIENT_KEY`]; every request is signed with one fixed
    /// upstream key (`sign_with`).
    Fixed(Creds),
    /// Clients hold [`CLIENT_KEY`], mapped to the upstream key in the
    /// credential store (`sign_with_mapped_credentials`).
    Mapped(Creds),
}

/// The head of one request the proxy sent upstream.
#[derive(Clone, Debug)]
pub struct UpstreamRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl UpstreamRequest {
    /// Whether `needle` occurs in the target or in any header value.
    pub fn mentions(&self, needle: &str) -> bool {
        self.uri.to_string().contains(needle)
            || self
                .headers
                .values()
                .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(needle))
    }
}

/// The request body the upstream client sends.
type UpstreamBody = s3tap::resign::ResignBody<s3tap::verify::VerifyBody<Incoming>>;

type ProxyService = BoxCloneService<
    Request<Incoming>,
    Response<s3tap::body::ResponseBody<s3tap::body::ResponseBody<s3tap::upstream::UpstreamBody>>>,
    BoxError,
>;

/// The in-process proxy, listening until dropped.
pub struct ProxyUnderTest {
    http: TestServer,
    https: TestServer,
    client: Creds,
    recorded: Arc<Mutex<Vec<UpstreamRequest>>>,
}

impl ProxyUnderTest {
    /// Serves the proxy stack in front of `upstream_endpoint`
    /// (`http://127.0.0.1:PORT`), with keys as `mode` says.
    pub async fn start(upstream_endpoint: &str, mode: KeyMode) -> ProxyUnderTest {
        let upstream = Upstream::parse(upstream_endpoint).expect("upstream endpoint");
        let client_creds = Creds::new(CLIENT_KEY, CLIENT_SECRET);
        let (store, resign, client) = match mode {
            KeyMode::ClientKeys(up) => (
                StaticCredentials::new().with_key(up.access_key.clone(), up.secret_key.as_str()),
                ResignLayer::new(upstream).sign_with_client_credentials(),
                up,
            ),
            KeyMode::Fixed(up) => (
                StaticCredentials::new().with_key(CLIENT_KEY, CLIENT_SECRET),
                ResignLayer::new(upstream).sign_with(UpstreamCredentials::new(
                    up.access_key.clone(),
                    up.secret_key.as_str(),
                )),
                client_creds,
            ),
            KeyMode::Mapped(up) => (
                StaticCredentials::new().with_credential(
                    CLIENT_KEY,
                    Credential::new(CLIENT_KEY, CLIENT_SECRET).upstream(UpstreamCredentials::new(
                        up.access_key.clone(),
                        up.secret_key.as_str(),
                    )),
                ),
                ResignLayer::new(upstream).sign_with_mapped_credentials(),
                client_creds,
            ),
        };

        let recorded = Arc::new(Mutex::new(Vec::new()));
        let record = recorded.clone();
        // The crate's own upstream client, as the s3tap binary uses it.
        let upstream_client = s3tap::upstream::UpstreamClient::new();
        let service = ServiceBuilder::new()
            .layer(SigV4VerifyLayer::new(store).publish_chunk_digests(true))
            .layer(resign)
            .map_request(move |request: Request<UpstreamBody>| {
                record.lock().unwrap().push(UpstreamRequest {
                    method: request.method().clone(),
                    uri: request.uri().clone(),
                    headers: request.headers().clone(),
                });
                request
            })
            .service(tower::ServiceExt::<Request<UpstreamBody>>::map_err(
                upstream_client,
                BoxError::from,
            ))
            .map_response(|mut response: Response<_>| {
                strip_hop_by_hop(response.headers_mut());
                response
            });
        let service: ProxyService = BoxCloneService::new(service);
        ProxyUnderTest {
            http: TestServer::spawn(service.clone()).await,
            https: TestServer::spawn_tls(service).await,
            client,
            recorded,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        self.http.url()
    }

    /// `https://localhost:PORT`, certified by [`Self::ca_pem`].
    pub fn tls_url(&self) -> &str {
        self.https.url()
    }

    /// The test CA of the HTTPS listener.
    pub fn ca_pem(&self) -> &Path {
        self.https.ca_pem().expect("TLS listener has a CA")
    }

    /// The key clients sign with.
    pub fn client_creds(&self) -> &Creds {
        &self.client
    }

    /// Every request head sent upstream so far, in order.
    pub fn upstream_requests(&self) -> Vec<UpstreamRequest> {
        self.recorded.lock().unwrap().clone()
    }
}
