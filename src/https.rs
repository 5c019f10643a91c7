//! The HTTPS client set-up the upstream client and the webhook sink share:
//! rustls with ring, the root store, the connector and hyper-util's pool.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// Why a root store or TLS configuration could not be made.
#[derive(Debug)]
pub(crate) enum TlsSetupError {
    /// A PEM root certificate is unusable.
    RootCertificate(String),
    /// The TLS stack refused the configuration.
    Tls(String),
}

/// The certificates of a PEM text, each checked to be a usable trust anchor
/// (so a bad one fails where it was given, not at the first request).
pub(crate) fn pem_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsSetupError::RootCertificate(e.to_string()))?;
        RootCertStore::empty()
            .add(cert.clone())
            .map_err(|e| TlsSetupError::RootCertificate(e.to_string()))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(TlsSetupError::RootCertificate(
            "no CERTIFICATE block in the PEM text".to_owned(),
        ));
    }
    Ok(certs)
}

/// A root store: the Mozilla roots compiled in (when `webpki`) plus `extra`.
pub(crate) fn root_store(
    webpki: bool,
    extra: impl IntoIterator<Item = CertificateDer<'static>>,
) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    if webpki {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for cert in extra {
        roots
            .add(cert)
            .map_err(|e| TlsSetupError::RootCertificate(e.to_string()))?;
    }
    Ok(roots)
}

/// rustls with the ring provider, its safe default protocol versions, the
/// given roots and no client certificate.
pub(crate) fn client_config(roots: RootCertStore) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP-or-HTTPS connector over `http` (plain `http://` URLs stay
/// allowed: loopback receivers and upstreams), offering HTTP/2 by ALPN when
/// `http2`.
pub(crate) fn connector<R>(
    tls: rustls::ClientConfig,
    mut http: HttpConnector<R>,
    http2: bool,
) -> HttpsConnector<HttpConnector<R>> {
    http.enforce_http(false);
    // Requests are small heads followed by the body: Nagle's algorithm
    // would hold the body back for the peer's delayed ACK.
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if http2 {
        https.enable_all_versions().wrap_connector(http)
    } else {
        https.enable_http1().wrap_connector(http)
    }
}

/// hyper-util's pooled client on tokio, closing connections idle for
/// `idle_timeout` (the pool's timer is what makes that timeout fire).
pub(crate) fn pooled<C, B>(
    connector: C,
    idle_timeout: Option<Duration>,
    max_idle_per_host: usize,
) -> Client<C, B>
where
    C: hyper_util::client::legacy::connect::Connect + Clone,
    B: http_body::Body + Send,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout)
        .pool_max_idle_per_host(max_idle_per_host)
        .build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_no_root_certificate() {
        assert!(matches!(
            pem_roots(b"not a certificate"),
            Err(TlsSetupError::RootCertificate(_))
        ));
        let store = root_store(true, Vec::new()).unwrap();
        assert!(!store.is_empty());
        client_config(store).unwrap();
    }
}
