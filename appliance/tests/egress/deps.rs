//! `.ci/check-deps.sh`: the `airlock` binary's normal and build dependencies hold no HTTP client or
//! model-hub crate, and the check does catch one.
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/check-deps.sh")
}

fn check_listing(listing: &str) -> (bool, String) {
    let mut child = Command::new("bash")
        .arg(script())
        .arg("--stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run check-deps.sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(listing.as_bytes())
        .expect("write listing");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn airlock_has_no_http_client_or_hub_dependency() {
    let out = Command::new("bash")
        .arg(script())
        .output()
        .expect("run check-deps.sh");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_check_catches_clients_and_network_features() {
    let base = "appliance v0.1.0 (/x)\n├── actix-web v4.9.0\n";
    let (ok, _) = check_listing(base);
    assert!(ok, "a clean listing passes");
    for bad in [
        "reqwest v0.12.4",
        "ureq v2.10.0",
        "curl-sys v0.4.0",
        "hf-hub v0.3.2",
        "attohttpc v0.28.0",
        "isahc v1.7.2",
        "awc v3.5.0",
        "hyper feature \"client\"",
        "burn feature \"network\"",
        "burn-common feature \"network\"",
        "tokenizers feature \"http\"",
    ] {
        let (ok, stderr) = check_listing(&format!("{base}│   └── {bad}\n"));
        assert!(!ok, "{bad} must fail the check");
        assert!(stderr.contains(bad), "{bad}: {stderr}");
    }
    // Names that merely contain a banned one are not flagged.
    let (ok, stderr) = check_listing(&format!("{base}├── hyper v1.0.0\n├── curlew v1.0.0\n"));
    assert!(ok, "{stderr}");
    let (ok, stderr) = check_listing("├── serde v1.0.0\n");
    assert!(!ok && stderr.contains("nothing was checked"), "{stderr}");
}
