//! HTTPS for the simulator: a rustls server configuration from a PEM
//! certificate chain and key, so tests can check how the tool trusts a
//! private CA.

use std::sync::Arc;

use anyhow::{Context, bail};
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// A TLS server configuration (TLS 1.2 and 1.3, HTTP/1.1) for this chain
/// (leaf first) and key, both PEM.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("cannot read the TLS certificate (PEM)")?;
    if chain.is_empty() {
        bail!("the TLS certificate file holds no PEM certificate");
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).context("cannot read the TLS private key (PEM)")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("the TLS certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
