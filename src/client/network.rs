//! How the client reaches the API on a company network: which certificate
//! authorities it trusts, which proxy carries its requests, and how a failure
//! of either is explained to the user.
//!
//! Trusted: the bundled Mozilla roots, the operating system's store (or
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, read by `rustls-native-certs`),
//! and every certificate of `--ca-cert`. Proxies come from `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` as reqwest reads them; an API on
//! this machine (localhost, 127.0.0.0/8, ::1) is never proxied.

use std::path::{Path, PathBuf};

use tokio_rustls::rustls;

use crate::error::Fatal;

/// What the user configured for TLS, loaded and checked.
#[derive(Clone, Default)]
pub struct Trust {
    /// Certificates from `--ca-cert`, trusted besides the built-in roots.
    pub extra_roots: Vec<reqwest::Certificate>,
}

impl Trust {
    /// Reads every certificate in each `--ca-cert` file (PEM; a file may hold
    /// several). A file that cannot be read or holds no certificate stops the
    /// run before anything is sent.
    pub fn load(ca_cert_files: &[PathBuf]) -> Result<Trust, Fatal> {
        let mut extra_roots = Vec::new();
        for path in ca_cert_files {
            extra_roots.extend(read_pem_bundle(path)?);
        }
        warn_about_cert_env();
        Ok(Trust { extra_roots })
    }
}

fn read_pem_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, Fatal> {
    let pem = std::fs::read(path)
        .map_err(|e| Fatal::Usage(format!("--ca-cert {}: cannot read it: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        Fatal::Usage(format!(
            "--ca-cert {}: not a PEM certificate file: {e}",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(Fatal::Usage(format!(
            "--ca-cert {}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// `SSL_CERT_FILE` or `SSL_CERT_DIR` naming something that is not there is
/// silently skipped by the certificate loader; say so, since the run that
/// follows would fail with an untrusted certificate for no visible reason.
fn warn_about_cert_env() {
    if let Some(file) = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty())
        && !Path::new(&file).is_file()
    {
        tracing::warn!(
            "SSL_CERT_FILE names {}, which is not a readable file; it is ignored",
            Path::new(&file).display()
        );
    }
    if let Some(dir) = std::env::var_os("SSL_CERT_DIR").filter(|v| !v.is_empty()) {
        for dir in std::env::split_paths(&dir) {
            if !dir.is_dir() {
                tracing::warn!(
                    "SSL_CERT_DIR names {}, which is not a directory; it is ignored",
                    dir.display()
                );
            }
        }
    }
}

/// The proxy requests to `url` go through, as `scheme://host:port` (never
/// with credentials), or `None` when they go direct. Uses the same rules,
/// read from the same environment, as the HTTP client itself.
pub fn proxy_for(url: &reqwest::Url) -> Option<String> {
    let uri: hyper::Uri = url.as_str().parse().ok()?;
    let matcher = hyper_util::client::proxy::matcher::Matcher::from_system();
    let intercept = matcher.intercept(&uri)?;
    let proxy = intercept.uri();
    let host = proxy.host()?;
    let scheme = proxy.scheme_str().unwrap_or("http");
    Some(match proxy.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// Advice for an error whose cause is a certificate this machine does not
/// trust, else `None`.
pub fn certificate_advice(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next = Some(error);
    while let Some(e) = next {
        if is_certificate_error(e) {
            return Some(
                "the server's certificate is not signed by a CA this machine trusts; if your \
                 network uses its own CA, pass --ca-cert PATH (its certificate, PEM) or set \
                 SSL_CERT_FILE",
            );
        }
        next = e.source();
    }
    None
}

fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    if matches!(
        e.downcast_ref::<rustls::Error>(),
        Some(rustls::Error::InvalidCertificate(_))
    ) {
        return true;
    }
    // An io::Error's `source` skips the error it wraps (which may be another
    // io::Error): look inside it.
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|inner| is_certificate_error(inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_a_usage_error() {
        let err = Trust::load(&[PathBuf::from("/nonexistent/ca.pem")])
            .err()
            .expect("refused");
        assert!(matches!(err, Fatal::Usage(_)));
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = Trust::load(std::slice::from_ref(&path))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("no certificate"), "{err}");
    }

    #[test]
    fn certificate_errors_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(std::io::Error::other(tls));
        assert!(certificate_advice(&io).is_some());
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(certificate_advice(&plain).is_none());
    }
}
