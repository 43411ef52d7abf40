use std::path::Path;

use crate::common::{Fixture, airlock};

/// Writes `text` as the fixture's policy (so its pki/ files resolve) and runs
/// `policy check`; returns (exit code, stdout, stderr).
fn check(fx: &Fixture, text: &str) -> (Option<i32>, String, String) {
    std::fs::write(fx.policy(), text).expect("write policy");
    let out = airlock(&[
        "policy",
        "check",
        "--config",
        fx.policy().to_str().expect("utf-8"),
    ]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const TLS: &str =
    "[tls]\ncert = \"pki/server.crt\"\nkey = \"pki/server.key\"\nclient_ca = [\"pki/ca.crt\"]\n";

fn broken(fx: &Fixture, text: &str, key: &str, reason: &str) {
    let (code, _, err) = check(fx, text);
    assert_eq!(code, Some(64), "{err}");
    let file = fx.policy().display().to_string();
    assert!(err.starts_with("airlock: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&file), "names the file: {err}");
    assert!(
        err.contains(&format!(": {key}: ")),
        "names key {key}: {err}"
    );
    assert!(err.contains(reason), "reason {reason:?}: {err}");
}

#[test]
fn unknown_key_is_named() {
    let fx = Fixture::new();
    let text = format!(
        "{TLS}\n[[identity]]\nroles = [\"user\"]\nmatch = {{ cn = \"a\", common_name = \"b\" }}\n"
    );
    broken(&fx, &text, "identity[0].match.common_name", "unknown key");
}

#[test]
fn bad_cidr_is_named() {
    let fx = Fixture::new();
    let text = format!(
        "{TLS}\n[[identity]]\nroles = [\"user\"]\nmatch = {{ cn = \"a\" }}\n\
         [[identity]]\nroles = [\"operator\"]\nmatch = {{ cn = \"b\", peer = [\"10.0.0.0/8\", \"10.300.0.0/16\"] }}\n"
    );
    broken(
        &fx,
        &text,
        "identity[1].match.peer[1]",
        "invalid IP address syntax",
    );
}

#[test]
fn bad_glob_is_named() {
    let fx = Fixture::new();
    let text = format!(
        "{TLS}\n[[identity]]\nroles = [\"user\"]\nmatch = {{ san_uri = \"spiffe://x/[app\" }}\n"
    );
    broken(&fx, &text, "identity[0].match.san_uri", "invalid glob");
}

#[test]
fn missing_cert_file_is_named() {
    let fx = Fixture::new();
    let text = TLS.replace("pki/server.crt", "pki/nope.crt");
    broken(&fx, &text, "tls.cert", "nope.crt");
}

#[test]
fn unknown_role_is_named() {
    let fx = Fixture::new();
    let text = format!(
        "{TLS}\n[[identity]]\nroles = [\"user\", \"superuser\"]\nmatch = {{ cn = \"a\" }}\n"
    );
    broken(
        &fx,
        &text,
        "identity[0].roles[1]",
        "unknown variant `superuser`",
    );
}

#[test]
fn key_not_matching_certificate_is_reported() {
    let fx = Fixture::new();
    let text = TLS.replace("pki/server.key", "pki/user.key");
    let (code, _, err) = check(&fx, &text);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("does not match the certificate"), "{err}");
}

#[test]
fn good_policy_prints_the_effective_policy() {
    let fx = Fixture::new();
    let (code, out, err) = check(&fx, TLS);
    assert_eq!(code, Some(0), "{err}");
    let dir = fx.dir.path().display().to_string();
    // Defaults filled in, paths absolute.
    assert!(
        out.contains(&format!("cert = \"{dir}/pki/server.crt\"")),
        "{out}"
    );
    assert!(out.contains("shutdown_grace_secs = 30"), "{out}");
    assert!(out.contains("max_body_bytes = 4194304"), "{out}");
    assert!(out.contains("state_dir = \"/var/lib/airlock\""), "{out}");
    assert!(Path::new(&dir).is_absolute());
}
