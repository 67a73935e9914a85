//! The TLS acceptor for https when `[http] tls_cert` and `tls_key` are given (WebDAV-Push needs
//! an https push resource). Handshakes run in each connection's task (see `listen`), so a slow
//! or broken client never holds up the others.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// Reads the certificate chain and key; the error names the file and what is wrong.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("http.tls_cert: {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "http.tls_cert: {}: holds no certificate",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("http.tls_key: {}: {e}", files.key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| {
        format!(
            "http.tls_cert/tls_key: {} and {} do not make a usable certificate: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
