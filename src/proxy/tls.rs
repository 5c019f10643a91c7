//! HTTPS on the S3 listener: the rustls acceptor made from the PEM files of
//! `--tls-cert`/`--tls-key` or `[tls]`, with errors that name the file.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use super::error::StartError;

pub(super) fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|e| {
            StartError::new(format!(
                "cannot read the TLS certificate {}: {}",
                cert.display(),
                pem_error(&e)
            ))
        })?;
    if certs.is_empty() {
        return Err(StartError::new(format!(
            "the TLS certificate {} has no CERTIFICATE block",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        StartError::new(format!(
            "cannot read the TLS private key {}: {}",
            key.display(),
            pem_error(&e)
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::new(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            StartError::new(format!(
                "the TLS certificate {} and key {} do not work together: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn pem_error(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM block of the right kind".to_owned(),
        other => format!("not valid PEM ({other:?})"),
    }
}
