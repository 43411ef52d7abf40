use std::os::unix::fs::PermissionsExt;

use crate::common::airlock;

#[test]
fn pki_dev_writes_keys_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("pki");
    let out = out_dir.to_str().expect("utf-8");
    let first = airlock(&["pki", "dev", "--out", out]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    let mut keys = 0;
    for entry in std::fs::read_dir(&out_dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "key") {
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            keys += 1;
        }
    }
    // ca, server, five roles, foreign
    assert_eq!(keys, 8);
    for role in ["user", "auditor", "admin", "operator", "privacy"] {
        let pem = std::fs::read_to_string(out_dir.join(format!("{role}.crt"))).expect("crt");
        let der = rustls::pki_types::CertificateDer::from(
            rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
                .map(|c: rustls::pki_types::CertificateDer<'_>| c.to_vec())
                .expect("pem"),
        );
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .collect();
        assert_eq!(cn, [role]);
    }

    let before = std::fs::read(out_dir.join("ca.key")).expect("ca.key");
    let again = airlock(&["pki", "dev", "--out", out]);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.starts_with("airlock: ") && err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert_eq!(
        std::fs::read(out_dir.join("ca.key")).expect("ca.key"),
        before,
        "untouched"
    );

    let forced = airlock(&["pki", "dev", "--out", out, "--force"]);
    assert!(forced.status.success());
    assert_ne!(
        std::fs::read(out_dir.join("ca.key")).expect("ca.key"),
        before,
        "regenerated"
    );
}
