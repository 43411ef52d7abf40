use rustls::AlertDescription;

use crate::common::{Fixture, refused_with};

#[test]
fn handshakes_without_a_valid_client_certificate_are_refused() {
    let fx = Fixture::new();
    let _server = fx.serve();
    // Sanity: the same client setup with a good certificate gets through.
    assert_eq!(fx.client(Some("user")).get("/healthz").status, 200);

    assert_eq!(
        refused_with(&fx.client(None)),
        AlertDescription::CertificateRequired
    );
    assert_eq!(
        refused_with(&fx.client(Some("foreign"))),
        AlertDescription::UnknownCA
    );
    assert_eq!(
        refused_with(&fx.client(Some("expired"))),
        AlertDescription::CertificateExpired
    );
    assert_eq!(
        refused_with(&fx.client(Some("revoked"))),
        AlertDescription::CertificateRevoked
    );
}

#[test]
fn tls12_is_refused_unless_enabled() {
    let fx = Fixture::new();
    let _server = fx.serve();
    let tls12_only = fx.client_with(Some("user"), &[&rustls::version::TLS12]);
    let err = tls12_only
        .connect()
        .expect_err("TLS 1.2 must be refused by default");
    assert_eq!(
        crate::common::alert_of(&err),
        Some(AlertDescription::ProtocolVersion),
        "{err}"
    );
}

#[test]
fn tls12_with_ecdhe_aead_when_enabled() {
    let fx = Fixture::with_policy_extra("tls12 = true");
    let _server = fx.serve();
    let client = fx.client_with(Some("user"), &[&rustls::version::TLS12]);
    let mut tls = client.connect().expect("TLS 1.2 handshake");
    assert_eq!(
        tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let suite = format!(
        "{:?}",
        tls.conn.negotiated_cipher_suite().expect("suite").suite()
    );
    assert!(
        suite.starts_with("TLS_ECDHE_") && (suite.contains("GCM") || suite.contains("CHACHA20")),
        "{suite}"
    );
    use std::io::Write;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("write");
    let resp = crate::common::read_response(&mut tls).expect("response");
    assert_eq!(resp.status, 200);
}
