use crate::common::{Fixture, command};

#[test]
fn serve_refuses_to_start_with_an_expired_server_certificate() {
    let fx = Fixture::new();
    // Reuse the expired client certificate as a server certificate: the expiry check at
    // start must stop it before anything listens.
    let text = std::fs::read_to_string(fx.policy())
        .expect("policy")
        .replace("pki/server.crt", "pki/expired.crt")
        .replace("pki/server.key", "pki/expired.key");
    std::fs::write(fx.policy(), text).expect("write");
    let out = command()
        .args(["serve", "--config"])
        .arg(fx.policy())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("airlock: ") && last.contains("expired on"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unsupported_key_type_is_reported() {
    let fx = Fixture::new();
    // A PEM private key rustls cannot use: not a key at all, but labelled as one.
    std::fs::write(
        fx.pki("bad.key"),
        "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let text = std::fs::read_to_string(fx.policy())
        .expect("policy")
        .replace("pki/server.key", "pki/bad.key");
    std::fs::write(fx.policy(), text).expect("write");
    let out = command()
        .args(["serve", "--config"])
        .arg(fx.policy())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsupported key type"), "{err}");
}
