//! A loopback HTTP/1.1 + h2 server (and its HTTPS twin with a throwaway CA)
//! for any tower service, stopped when the handle is dropped.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceExt};

type BoxError = Box<dyn StdError + Send + Sync>;

/// A running test server. Dropping it stops accepting and asks open
/// connections to finish gracefully.
pub struct TestServer {
    base_url: String,
    addr: SocketAddr,
    ca: Option<TestCa>,
    shutdown: watch::Sender<bool>,
}

struct TestCa {
    // Keeps the CA file alive as long as the server.
    _dir: tempfile::TempDir,
    pem_path: PathBuf,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Serves `svc` over plain HTTP (h1 and h2c) on 127.0.0.1 with a free port.
    pub async fn spawn<S, B>(svc: S) -> TestServer
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        Self::start(svc, None).await
    }

    /// Serves `svc` over HTTPS (h1 and h2 by ALPN) with a certificate for
    /// `localhost` and `127.0.0.1` issued by a fresh CA; hand
    /// [`TestServer::ca_pem`] to clients (`AWS_CA_BUNDLE`,
    /// `NODE_EXTRA_CA_CERTS`).
    pub async fn spawn_tls<S, B>(svc: S) -> TestServer
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let (acceptor, ca) = tls_acceptor();
        Self::start(svc, Some((acceptor, ca))).await
    }

    async fn start<S, B>(svc: S, tls: Option<(TlsAcceptor, TestCa)>) -> TestServer
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, mut stop) = watch::channel(false);
        let (acceptor, ca) = match tls {
            Some((acceptor, ca)) => (Some(acceptor), Some(ca)),
            None => (None, None),
        };
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        // Clients check the certificate against the name in the URL, so the
        // TLS server is addressed as localhost (the certificate has both).
        let host = if acceptor.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let base_url = format!("{scheme}://{host}:{}", addr.port());

        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(_) => continue,
                    },
                    _ = stop.changed() => break,
                };
                let svc = svc.clone();
                let acceptor = acceptor.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let hyper_svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        svc.clone().oneshot(req)
                    });
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            serve_conn(TokioIo::new(tls), hyper_svc, stop).await;
                        }
                        None => serve_conn(TokioIo::new(tcp), hyper_svc, stop).await,
                    }
                });
            }
        });

        TestServer {
            base_url,
            addr,
            ca,
            shutdown,
        }
    }

    /// `http://127.0.0.1:PORT` or `https://localhost:PORT`, no trailing slash.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM file of the CA that issued the HTTPS certificate (TLS servers only).
    pub fn ca_pem(&self) -> Option<&Path> {
        self.ca.as_ref().map(|ca| ca.pem_path.as_path())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn serve_conn<I, S, B>(io: I, svc: S, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// A CA and a server certificate for localhost/127.0.0.1 signed by it: real
/// clients trust a CA bundle more readily than a bare self-signed leaf.
fn tls_acceptor() -> (TlsAcceptor, TestCa) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "s3tap test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");

    let leaf_key = KeyPair::generate().expect("server key");
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .expect("sign server certificate");

    let dir = tempfile::tempdir().expect("temp dir for CA");
    let pem_path = dir.path().join("ca.pem");
    std::fs::write(&pem_path, ca_cert.pem()).expect("write CA PEM");

    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        leaf_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .expect("server TLS config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    (
        TlsAcceptor::from(Arc::new(config)),
        TestCa {
            _dir: dir,
            pem_path,
        },
    )
}
