use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::common::Fixture;
use crate::support::{both, repo_file};

/// Curves a modern TLS server may offer (rustls with ring: exactly these).
const STRONG_CURVES: [&str; 3] = ["X25519", "secp256r1", "secp384r1"];
/// Protocol scans and what the server must say to each, by sslyze's JSON key.
const LEGACY: [&str; 4] = [
    "ssl_2_0_cipher_suites",
    "ssl_3_0_cipher_suites",
    "tls_1_0_cipher_suites",
    "tls_1_1_cipher_suites",
];

/// sslyze from `AIRLOCK_SSLYZE`, else the venv `./install.sh --test` creates.
fn sslyze() -> PathBuf {
    let path = std::env::var_os("AIRLOCK_SSLYZE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_file(".venv-test/bin/sslyze"));
    assert!(
        path.is_file(),
        "sslyze not found at {}: run ./install.sh --test (it creates .venv-test with sslyze)",
        path.display()
    );
    path
}

/// Every scan command that bears on protocols, suites, curves and known TLS attacks.
const FULL_SCAN: [&str; 12] = [
    "--sslv2",
    "--sslv3",
    "--tlsv1",
    "--tlsv1_1",
    "--tlsv1_2",
    "--tlsv1_3",
    "--elliptic_curves",
    "--heartbleed",
    "--openssl_ccs",
    "--robot",
    "--reneg",
    "--fallback",
];

/// Runs sslyze with `commands` against a live `airlock serve` of `fx`, presenting the
/// client certificate `<client>.crt` if given, and returns sslyze's record of the server.
fn run_sslyze(fx: &Fixture, client: Option<&str>, commands: &[&str]) -> Value {
    let tool = sslyze();
    let _server = fx.serve();
    let out_file = fx.dir.path().join("sslyze.json");
    let mut cmd = Command::new(&tool);
    cmd.arg(format!("--json_out={}", out_file.display()));
    if let Some(name) = client {
        cmd.arg("--cert")
            .arg(fx.pki(&format!("{name}.crt")))
            .arg("--key")
            .arg(fx.pki(&format!("{name}.key")));
    }
    let out = cmd
        .args(commands)
        // No Mozilla profile check: it includes certificate trust, meaningless for a dev CA.
        .arg("--mozilla_config=disable")
        // SNI localhost (the server certificate's name), connecting to IPv4 loopback only.
        .arg(format!("localhost:{}{{127.0.0.1}}", fx.port))
        .output()
        .expect("run sslyze");
    assert!(out.status.success(), "sslyze: {}", both(&out));
    let json: Value =
        serde_json::from_slice(&std::fs::read(&out_file).expect("sslyze JSON")).expect("JSON");
    let server = json["server_scan_results"][0].clone();
    assert_eq!(server["connectivity_status"], "COMPLETED", "{server:#}");
    assert_eq!(server["scan_status"], "COMPLETED", "{server:#}");
    server
}

/// The full scan, presenting the dev `user` certificate: the server requires one, and
/// without it every TLS 1.2 handshake fails and would look "rejected" for the wrong reason.
fn scan(fx: &Fixture) -> Value {
    run_sslyze(fx, Some("user"), &FULL_SCAN)["scan_result"].clone()
}

/// The `result` of one scan command, which must have completed.
fn result<'a>(scan: &'a Value, key: &str) -> &'a Value {
    assert_eq!(scan[key]["status"], "COMPLETED", "{key}: {:#}", scan[key]);
    &scan[key]["result"]
}

fn accepted(scan: &Value, key: &str) -> Vec<String> {
    result(scan, key)["accepted_cipher_suites"]
        .as_array()
        .expect("accepted_cipher_suites")
        .iter()
        .map(|s| s["cipher_suite"]["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Findings that must hold whatever the policy: no legacy protocol, TLS 1.3 with AEAD
/// suites only, strong curves only, none of the classic vulnerabilities.
fn assert_common(scan: &Value) {
    for key in LEGACY {
        assert_eq!(
            result(scan, key)["is_tls_version_supported"],
            false,
            "{key} must be refused"
        );
        assert!(
            accepted(scan, key).is_empty(),
            "{key}: {:?}",
            accepted(scan, key)
        );
    }
    let tls13 = accepted(scan, "tls_1_3_cipher_suites");
    assert!(!tls13.is_empty(), "TLS 1.3 must be offered");
    for suite in &tls13 {
        assert!(
            [
                "TLS_AES_256_GCM_SHA384",
                "TLS_AES_128_GCM_SHA256",
                "TLS_CHACHA20_POLY1305_SHA256"
            ]
            .contains(&suite.as_str()),
            "unexpected TLS 1.3 suite {suite}"
        );
    }
    let curves = result(scan, "elliptic_curves");
    let supported: Vec<&str> = curves["supported_curves"]
        .as_array()
        .expect("supported_curves")
        .iter()
        .map(|c| c["name"].as_str().expect("curve name"))
        .collect();
    assert!(!supported.is_empty(), "no ECDH curve");
    for curve in &supported {
        assert!(STRONG_CURVES.contains(curve), "weak curve offered: {curve}");
    }
    assert_eq!(
        result(scan, "heartbleed")["is_vulnerable_to_heartbleed"],
        false
    );
    assert_eq!(
        result(scan, "openssl_ccs_injection")["is_vulnerable_to_ccs_injection"],
        false
    );
    let robot = result(scan, "robot")["robot_result"]
        .as_str()
        .expect("robot");
    assert!(robot.starts_with("NOT_VULNERABLE"), "ROBOT: {robot}");
    assert_eq!(
        result(scan, "session_renegotiation")["is_vulnerable_to_client_renegotiation_dos"],
        false
    );
    println!("TLS 1.3 suites {tls13:?}, curves {supported:?}");
}

/// Without a certificate, sslyze's own probe finds client authentication required (with
/// one, it does not probe, so this is a separate scan).
#[test]
fn scanner_finds_client_certificates_required() {
    let fx = Fixture::new();
    let server = run_sslyze(&fx, None, &["--tlsv1_3"]);
    assert_eq!(
        server["connectivity_result"]["client_auth_requirement"], "REQUIRED",
        "{:#}",
        server["connectivity_result"]
    );
}

#[test]
fn default_policy_offers_tls13_only() {
    let fx = Fixture::new();
    let scan = scan(&fx);
    assert_common(&scan);
    let tls12 = result(&scan, "tls_1_2_cipher_suites");
    assert_eq!(
        tls12["is_tls_version_supported"],
        false,
        "TLS 1.2 must be off by default: {:?}",
        accepted(&scan, "tls_1_2_cipher_suites")
    );
}

#[test]
fn tls12_when_enabled_is_ecdhe_with_aead_only() {
    let fx = Fixture::with_policy_extra("tls12 = true");
    let scan = scan(&fx);
    assert_common(&scan);
    let suites = accepted(&scan, "tls_1_2_cipher_suites");
    assert!(
        !suites.is_empty(),
        "tls12 = true: TLS 1.2 must be accepted with a client certificate"
    );
    for suite in &suites {
        let aead = suite.ends_with("_GCM_SHA256")
            || suite.ends_with("_GCM_SHA384")
            || suite.ends_with("_CHACHA20_POLY1305_SHA256");
        assert!(
            suite.starts_with("TLS_ECDHE_") && aead,
            "TLS 1.2 suite {suite} is not ECDHE with AEAD"
        );
    }
    println!("TLS 1.2 suites {suites:?}");
}
