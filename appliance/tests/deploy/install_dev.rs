use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Server, free_port};
use crate::support::{install_sh, require_tool};

/// `./install.sh --dev --state STATE --listen 127.0.0.1:PORT` (with AIRLOCK_BIN, so no
/// release build): waits for the curl line it prints, runs that line exactly as printed
/// until /healthz answers, then stops the service with SIGTERM (install.sh execs airlock,
/// so its pid is the service's).
fn dev_once(state: &Path) {
    let port = free_port();
    let mut child = install_sh()
        .args(["--dev", "--state"])
        .arg(state)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn install.sh --dev");
    let stdout = child.stdout.take().expect("stdout");
    let mut server = Server { child };
    let curl = BufReader::new(stdout)
        .lines()
        .map(|l| l.expect("read stdout"))
        .find(|l| l.trim_start().starts_with("curl ") && l.contains("/healthz"))
        .unwrap_or_else(|| {
            panic!(
                "install.sh --dev printed no curl line: {}",
                server.wait(Duration::from_secs(5)).1
            )
        });
    assert!(
        curl.ends_with(&format!("https://localhost:{port}/healthz")),
        "{curl}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let out = Command::new("sh")
            .args(["-c", curl.trim()])
            .output()
            .expect("run the printed curl command");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the printed curl command failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let json: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(
        json["identity"]["roles"],
        serde_json::json!(["user"]),
        "{body}"
    );

    server.terminate();
    let (status, stderr) = server.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "airlock dev after SIGTERM: {status}\n{stderr}"
    );
}

#[test]
fn install_dev_works_twice_on_the_same_state_dir() {
    require_tool("curl");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    dev_once(&state);
    let ca = std::fs::read(state.join("pki/ca.crt")).expect("ca");
    dev_once(&state);
    assert_eq!(
        std::fs::read(state.join("pki/ca.crt")).expect("ca"),
        ca,
        "the second run reuses the dev PKI"
    );
}

/// `--dev` refuses clearly when the binary it is told to use is not there.
#[test]
fn install_dev_names_a_missing_binary() {
    let out = install_sh()
        .args(["--dev"])
        .env("AIRLOCK_BIN", "/nonexistent/airlock")
        .output()
        .expect("run install.sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        err.trim(),
        "install.sh: AIRLOCK_BIN=/nonexistent/airlock is not an executable file"
    );
}
