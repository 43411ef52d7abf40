use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Fixture, command};

/// Runs `airlock dev` until it prints its curl line, checks that the command it prints
/// works (with the same files, through our rustls client), then stops it.
fn run_dev_once(state: &std::path::Path, port: u16) {
    let mut child = command()
        .args(["dev", "--state"])
        .arg(state)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn airlock dev");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let curl = loop {
        assert!(Instant::now() < deadline, "no curl line");
        let line = lines.next().expect("airlock dev exited").expect("read");
        if line.trim_start().starts_with("curl ") && line.contains("/healthz") {
            break line;
        }
    };
    // curl --cert PKI/user.crt --key PKI/user.key --cacert PKI/ca.crt https://localhost:PORT/healthz
    let words: Vec<&str> = curl.split_whitespace().collect();
    let arg = |flag: &str| {
        let i = words.iter().position(|w| *w == flag).expect(flag);
        std::path::PathBuf::from(words[i + 1])
    };
    assert_eq!(
        arg("--cert"),
        state.join("pki/user.crt").canonicalize().expect("cert")
    );
    assert_eq!(
        arg("--key"),
        state.join("pki/user.key").canonicalize().expect("key")
    );
    assert_eq!(
        arg("--cacert"),
        state.join("pki/ca.crt").canonicalize().expect("ca")
    );
    assert_eq!(
        words.last().copied(),
        Some(format!("https://localhost:{port}/healthz").as_str())
    );

    // The printed files work: same client the other tests use, pointed at this state.
    let fx = Fixture::from_dir(state, port);
    let resp = fx.client(Some("user")).get("/healthz");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.json()["identity"]["roles"],
        serde_json::json!(["user"])
    );
    assert_eq!(fx.client(Some("operator")).get("/metrics").status, 200);
    assert_eq!(fx.client(Some("user")).get("/metrics").status, 403);

    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn dev_works_twice_on_the_same_state_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    run_dev_once(&state, crate::common::free_port());
    let ca = std::fs::read(state.join("pki/ca.crt")).expect("ca");
    let policy = std::fs::read(state.join("airlock.toml")).expect("policy");
    assert!(
        String::from_utf8_lossy(&policy).contains("[egress]\nlockdown = \"enforce\""),
        "the dev policy enforces the egress lockdown"
    );
    run_dev_once(&state, crate::common::free_port());
    assert_eq!(
        std::fs::read(state.join("pki/ca.crt")).expect("ca"),
        ca,
        "PKI reused"
    );
    assert_eq!(
        std::fs::read(state.join("airlock.toml")).expect("policy"),
        policy,
        "policy reused"
    );
    assert!(state.join("logs").is_dir());
}
