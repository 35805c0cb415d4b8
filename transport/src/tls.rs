//! Mutual TLS, wherever vfpga uses it: vfpgad (client) and board agents (server), and
//! guests (client) and vfpgad's TLS listeners (server). Both sides present a certificate
//! signed by the deployment's own CA and accept only peers signed by it; a server that
//! serves several peers tells them apart by the names in their certificates
//! ([`cert_names`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The three files of one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate peers must be signed by.
    pub ca: PathBuf,
    /// This side's certificate (chain).
    pub cert: PathBuf,
    /// This side's private key.
    pub key: PathBuf,
}

/// A TLS set-up problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the combination (e.g. key does not match certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider (ring: small, no C toolchain beyond what ring needs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::File {
        path: path.to_owned(),
        reason,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.to_owned(),
        reason: format!("no usable private key: {e}"),
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(path)? {
        store.add(c).map_err(|e| TlsError::File {
            path: path.to_owned(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(store))
}

/// Client side: trusts boards signed by the CA, authenticates with its certificate.
pub fn client_config(f: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(&f.ca)?)
        .with_client_auth_cert(certs(&f.cert)?, key(&f.key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Server side: requires a client certificate signed by the CA.
pub fn server_config(f: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&f.ca)?, provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&f.cert)?, key(&f.key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// The name a board's certificate must carry when none is configured: the host part of
/// `host:port`, without the brackets of an IPv6 address (`[::1]:7447` → `::1`).
pub fn default_server_name(address: &str) -> String {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_owned()
}

/// Checks that `name` can be matched against a certificate (a DNS name or an IP
/// address), so a typo shows at start-up instead of on every connection.
pub fn check_server_name(name: &str) -> Result<(), String> {
    rustls_pki_types::ServerName::try_from(name)
        .map(|_| ())
        .map_err(|e| format!("{name:?} is neither a DNS name nor an IP address ({e})"))
}

/// Whether the end-entity certificate `der` is valid for `name` (a DNS name or an IP
/// address among its subject alternative names), as a server name check would decide.
/// The chain must have been verified already (the handshake did).
pub fn cert_names(der: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(name) = rustls_pki_types::ServerName::try_from(name) else {
        return false;
    };
    webpki::EndEntityCert::try_from(der)
        .is_ok_and(|c| c.verify_is_valid_for_subject_name(&name).is_ok())
}

/// Says in words why a TLS connection to `server_name` failed, when the cause is one a
/// person can fix (certificates of another CA, a name the server's certificate does not
/// carry, a certificate of the wrong kind, an expired one); otherwise the error as is.
pub fn explain(e: &std::io::Error, server_name: &str) -> String {
    use rustls::{AlertDescription, CertificateError, Error};
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<Error>());
    let why = match tls {
        Some(Error::InvalidCertificate(c)) => match c {
            CertificateError::BadSignature | CertificateError::UnknownIssuer => {
                "the peer's certificate is not signed by our CA (ca.pem): the two sides hold certificates of different `vfpga-agent cert init` runs".to_owned()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                "the server's certificate does not carry the name {server_name:?}: connect with a name it carries (--server-name, or server_name in [[remote.board]]), or issue it one (`vfpga-agent cert server --name`)"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the peer's certificate has expired: issue a new one".to_owned()
            }
            c if format!("{c:?}").contains("Eku") => {
                "the peer's certificate is of the wrong kind (a client certificate where a server one belongs, or the reverse): use `cert server` for servers and `cert client` for clients".to_owned()
            }
            c => format!("the peer's certificate is refused: {c:?}"),
        },
        Some(Error::AlertReceived(a)) if matches!(a, AlertDescription::BadCertificate | AlertDescription::UnknownCA | AlertDescription::CertificateRequired | AlertDescription::UnsupportedCertificate | AlertDescription::CertificateUnknown) => format!(
            "the server refused our certificate ({a:?}): it must be a client certificate (`vfpga-agent cert client`) signed by the server's CA; the server's log says more"
        ),
        _ if matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
        ) => {
            "the server closed the connection during the TLS handshake: it probably refused our certificate (a server certificate used as a client one, or one of another CA); the server's log says why".to_owned()
        }
        _ if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "nothing listens there (connection refused): is the server running, on that address and port?".to_owned()
        }
        _ => return e.to_string(),
    };
    format!("{e}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_drop_the_port_and_ipv6_brackets() {
        assert_eq!(default_server_name("pynq1.lab:7447"), "pynq1.lab");
        assert_eq!(default_server_name("10.0.0.5:7447"), "10.0.0.5");
        assert_eq!(default_server_name("[::1]:7447"), "::1");
        for a in ["pynq1.lab:7447", "10.0.0.5:7447", "[::1]:7447"] {
            check_server_name(&default_server_name(a)).unwrap();
        }
        assert!(check_server_name("not a name").is_err());
        assert!(check_server_name("[::1]").is_err());
    }

    #[test]
    fn tls_failures_are_explained() {
        use rustls::{AlertDescription, CertificateError, Error};
        let io = |e: Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let cases = [
            (
                io(Error::InvalidCertificate(CertificateError::BadSignature)),
                "not signed by our CA",
            ),
            (
                io(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
                "different `vfpga-agent cert init`",
            ),
            (
                io(Error::InvalidCertificate(CertificateError::NotValidForName)),
                "--server-name",
            ),
            (
                io(Error::AlertReceived(AlertDescription::BadCertificate)),
                "refused our certificate",
            ),
            (
                std::io::ErrorKind::BrokenPipe.into(),
                "closed the connection during the TLS handshake",
            ),
            (
                std::io::ErrorKind::ConnectionRefused.into(),
                "nothing listens there",
            ),
        ];
        for (e, want) in cases {
            let text = explain(&e, "board1");
            assert!(text.contains(want), "{text}");
        }
        let plain = std::io::Error::other("something else");
        assert_eq!(explain(&plain, "board1"), "something else");
    }
}
