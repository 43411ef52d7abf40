//! The server's TLS configuration: rustls with the ring provider, mutual TLS mandatory.
//!
//! - TLS 1.3 only; TLS 1.2 only when the policy sets `tls.tls12`, and then only ECDHE key
//!   exchange with AEAD suites (AES-GCM, ChaCha20-Poly1305): no CBC, no RSA key exchange,
//!   no static DH. The suites are listed here explicitly rather than inherited from the
//!   provider's defaults, so a rustls upgrade cannot widen them.
//! - Every connection must present a client certificate that chains to a configured CA
//!   (`WebPkiClientVerifier`, no anonymous fallback) and is not revoked by a configured CRL.
//!   Once any CRL is configured, rustls's strict default applies: a certificate whose
//!   issuer no configured CRL covers is refused (unknown revocation status fails closed).
//!   CRLs are read at start; a new CRL takes a restart.
//! - No session resumption (no tickets, no session cache): every connection's client
//!   certificate is verified in a full handshake, so expiry and revocation apply at once.
//! - The server certificate's validity is checked at start: expired or not yet valid is an
//!   error, less than [`EXPIRY_WARNING_DAYS`] left is a warning.
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::{self as provider, cipher_suite as cs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use time::OffsetDateTime;

use crate::error::TlsError;

/// Days of server-certificate validity below which start-up logs a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// The only suites offered. TLS 1.3 suites are all AEAD by construction.
const TLS13_SUITES: [rustls::SupportedCipherSuite; 3] = [
    cs::TLS13_AES_256_GCM_SHA384,
    cs::TLS13_AES_128_GCM_SHA256,
    cs::TLS13_CHACHA20_POLY1305_SHA256,
];
/// TLS 1.2 suites when enabled: ECDHE + AEAD only.
const TLS12_SUITES: [rustls::SupportedCipherSuite; 6] = [
    cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// The ring provider restricted to our suites.
fn crypto_provider(tls12: bool) -> Arc<CryptoProvider> {
    let mut suites = TLS13_SUITES.to_vec();
    if tls12 {
        suites.extend(TLS12_SUITES);
    }
    Arc::new(CryptoProvider {
        cipher_suites: suites,
        // X25519, P-256, P-384: ring's default groups, all ECDHE.
        kx_groups: provider::default_provider().kx_groups,
        ..provider::default_provider()
    })
}

/// Builds the server configuration from the policy's `[tls]` section.
pub fn server_config(tls: &policy::TlsConfig) -> Result<ServerConfig, TlsError> {
    let provider = crypto_provider(tls.tls12);

    let chain = read_certs(&tls.cert, "server certificate")?;
    check_validity(&tls.cert, &chain[0], OffsetDateTime::now_utc())?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| TlsError::File {
        what: "server key",
        path: tls.key.clone(),
        reason: pem_reason(&e),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|_| TlsError::UnsupportedKey {
            path: tls.key.clone(),
        })?;
    CertifiedKey::new(chain.clone(), signing_key)
        .keys_match()
        .map_err(|_| TlsError::KeyMismatch {
            key: tls.key.clone(),
            cert: tls.cert.clone(),
        })?;

    let mut roots = RootCertStore::empty();
    for path in &tls.client_ca {
        for cert in read_certs(path, "client CA")? {
            roots.add(cert).map_err(|e| TlsError::File {
                what: "client CA",
                path: path.clone(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }
    let mut crls = Vec::new();
    for path in &tls.crl {
        crls.extend(read_crls(path)?);
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .build()
        .map_err(|e| TlsError::Verifier(format!("{e:?}")))?;

    let versions: &[&rustls::SupportedProtocolVersion] = if tls.tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.ignore_client_order = true;
    // No session resumption: a resumed session skips the client-certificate check, so a
    // certificate that expired (or was revoked) since the first handshake would keep
    // working for the ticket's lifetime. Every connection is a full handshake (about a
    // millisecond); clients of an inference API hold their connections open anyway.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => format!("invalid PEM: {other:?}"),
    }
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(pem_reason(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(err(
            "no certificate found (expected PEM `CERTIFICATE` blocks)".into(),
        ));
    }
    Ok(certs)
}

/// CRLs in PEM (`X509 CRL` blocks) or a single DER CRL.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::File {
        what: "CRL",
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if bytes.starts_with(b"-----") || bytes.iter().take(64).all(|b| b.is_ascii()) {
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(pem_reason(&e)))?;
        if crls.is_empty() {
            return Err(err(
                "no CRL found (expected PEM `X509 CRL` blocks or DER)".into()
            ));
        }
        Ok(crls)
    } else {
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    }
}

/// Fails on an expired or not-yet-valid certificate; warns when expiry is near.
fn check_validity(
    path: &Path,
    cert: &CertificateDer<'_>,
    now: OffsetDateTime,
) -> Result<(), TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|e| TlsError::File {
        what: "server certificate",
        path: path.to_owned(),
        reason: format!("cannot parse: {e}"),
    })?;
    let validity = parsed.validity();
    let not_before = validity.not_before.to_datetime();
    let not_after = validity.not_after.to_datetime();
    let invalid = |reason: String| TlsError::CertNotValid {
        path: path.to_owned(),
        reason,
    };
    if now < not_before {
        return Err(invalid(format!("not valid before {not_before}")));
    }
    if now > not_after {
        return Err(invalid(format!("expired on {not_after}")));
    }
    let left = (not_after - now).whole_days();
    if left < EXPIRY_WARNING_DAYS {
        tracing::warn!(
            cert = %path.display(),
            %not_after,
            "server certificate expires in {left} days"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn cert_valid(from: OffsetDateTime, to: OffsetDateTime) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.not_before = from;
        params.not_after = to;
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("sign").der().clone()
    }

    #[test]
    fn expired_and_future_server_certs_are_errors() {
        let now = OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let p = Path::new("server.crt");
        let expired = cert_valid(now - day * 10, now - day);
        let err = check_validity(p, &expired, now).expect_err("expired");
        assert!(err.to_string().contains("expired on"), "{err}");
        let future = cert_valid(now + day, now + day * 10);
        let err = check_validity(p, &future, now).expect_err("future");
        assert!(err.to_string().contains("not valid before"), "{err}");
        check_validity(p, &cert_valid(now - day, now + day * 5), now)
            .expect("near expiry is only a warning");
    }

    #[test]
    fn tls12_is_off_by_default_and_only_aead_ecdhe_when_on() {
        let p = crypto_provider(false);
        assert!(
            p.cipher_suites
                .iter()
                .all(|s| s.version() == &rustls::version::TLS13)
        );
        let p = crypto_provider(true);
        for s in &p.cipher_suites {
            let name = format!("{:?}", s.suite());
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
            assert!(
                name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
                "{name}"
            );
        }
    }
}
