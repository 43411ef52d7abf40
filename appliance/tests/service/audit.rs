//! The audit log as an auditor meets it: records written by a real `airlock serve`
//! (real mTLS, real sled on disk), the auditor and privacy endpoints, and the offline
//! `airlock audit` commands on the state directory and on a copied export.
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use audit::note::{Verifier, open_checkpoint};

use crate::common::{Fixture, Server, airlock, command, fingerprint};

/// A fixture whose policy also maps the dev `auditor` and `privacy` certificates.
fn fixture() -> Fixture {
    let fx = Fixture::new();
    let mut policy = std::fs::read_to_string(fx.policy()).expect("policy");
    policy.push_str(
        "\n[[identity]]\nroles = [\"auditor\"]\nmatch = { cn = \"auditor\" }\n\
         \n[[identity]]\nroles = [\"privacy\"]\nmatch = { cn = \"privacy\" }\n",
    );
    std::fs::write(fx.policy(), policy).expect("write policy");
    fx
}

fn state(fx: &Fixture) -> PathBuf {
    fx.dir.path().join("state")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` failed with exit code `code` and one line on stderr; returns that line.
fn one_line_error(out: &Output, code: i32) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {err}",
        stdout(out)
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("airlock: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err.trim_end().to_owned()
}

/// `airlock serve` answering requests (so its signal handlers are installed).
fn serve(fx: &Fixture) -> Server {
    let server = fx.serve();
    assert_eq!(fx.client(Some("user")).get("/healthz").status, 200);
    server
}

/// SIGTERM and a clean exit.
fn stop(mut server: Server) -> String {
    server.terminate();
    let (status, err) = server.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}: {err}");
    err
}

/// All records through the auditor endpoint, parsed.
fn records(fx: &Fixture) -> Vec<serde_json::Value> {
    let resp = fx
        .client(Some("auditor"))
        .get("/v1/audit/records?from=0&limit=10000");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("application/jsonl")),
        "{:?}",
        resp.headers
    );
    resp.text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("record JSON"))
        .collect()
}

#[test]
fn an_auditor_exports_copies_and_verifies_offline_and_an_edit_is_named() {
    let fx = fixture();
    let server = serve(&fx);
    let user = fx.client(Some("user"));
    assert_eq!(user.get("/healthz").status, 200);
    assert_eq!(user.get("/metrics").status, 403);

    // The public key can be read while the service runs (key files only)...
    let out = airlock(&["audit", "pubkey", "--state", s(&state(&fx))]);
    assert!(out.status.success(), "{}", stderr(&out));
    let vkey = stdout(&out).trim().to_owned();
    let key = Verifier::from_vkey(&vkey).expect("pubkey prints a vkey");
    // ...but the database belongs to the service: one clear line, no waiting forever.
    let out = airlock(&[
        "audit",
        "export",
        "--state",
        s(&state(&fx)),
        "--out",
        s(&fx.dir.path().join("early.jsonl")),
    ]);
    let line = one_line_error(&out, 1);
    assert!(
        line.contains("in use by the running service") && line.contains("admin API"),
        "{line}"
    );
    assert!(!fx.dir.path().join("early.jsonl").exists());
    let out = airlock(&["audit", "verify", "--state", s(&state(&fx)), "--key", &vkey]);
    assert!(one_line_error(&out, 1).contains("in use by the running service"));

    // The auditor's checkpoint verifies with the pinned key and covers the denial.
    let resp = fx.client(Some("auditor")).get("/v1/audit/checkpoint");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let old_checkpoint = resp.body.clone();
    let cp = open_checkpoint(key.name(), std::slice::from_ref(&key), &old_checkpoint)
        .expect("checkpoint verifies with the pubkey");
    assert!(cp.size() >= 3, "start, policy load, denial: {}", cp.size());
    stop(server);

    // Export with the service stopped; the export and the key travel to another place.
    let export = fx.dir.path().join("audit.jsonl");
    let out = airlock(&[
        "audit",
        "export",
        "--state",
        s(&state(&fx)),
        "--out",
        s(&export),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("exported "), "{}", stdout(&out));
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let copied = elsewhere.path().join("audit.jsonl");
    std::fs::copy(&export, &copied).expect("copy export");
    std::fs::write(elsewhere.path().join("audit.pub"), format!("{vkey}\n")).expect("pub");
    let pubfile = elsewhere.path().join("audit.pub");

    let text = std::fs::read_to_string(&copied).expect("export text");
    let lines: Vec<&str> = text.lines().collect();
    let kinds: Vec<String> = lines[1..]
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["kind"].to_string())
        .collect();
    for want in [
        "service.start",
        "policy.load",
        "access.denied",
        "audit.checkpoint",
        "service.stop",
    ] {
        assert!(
            kinds.contains(&format!("\"{want}\"")),
            "{want} missing: {kinds:?}"
        );
    }
    let n = lines.len() - 1;

    let out = airlock(&[
        "audit",
        "verify",
        "--export",
        s(&copied),
        "--key",
        s(&pubfile),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ok = stdout(&out);
    assert!(ok.starts_with(&format!("OK: {n} records, head ")), "{ok}");
    assert!(ok.contains(", last checkpoint "), "{ok}");
    // The state directory verifies too, and extends the checkpoint the auditor kept.
    let old = elsewhere.path().join("old-checkpoint.txt");
    std::fs::write(&old, &old_checkpoint).expect("write old checkpoint");
    let out = airlock(&[
        "audit",
        "verify",
        "--state",
        s(&state(&fx)),
        "--key",
        &vkey,
        "--since-checkpoint",
        s(&old),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("OK: {n} records")),
        "{}",
        stdout(&out)
    );

    // One character of the access.denied record edited: verification names that record.
    let (i, denied) = lines
        .iter()
        .enumerate()
        .find(|(_, l)| l.contains("\"access.denied\""))
        .expect("denial in export");
    let seq = serde_json::from_str::<serde_json::Value>(denied).expect("json")["seq"]
        .as_u64()
        .expect("seq");
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[i] = denied.replacen("\"status\":\"403\"", "\"status\":\"203\"", 1);
    assert_ne!(edited[i], *denied);
    std::fs::write(&copied, edited.join("\n") + "\n").expect("write edited");
    let out = airlock(&[
        "audit",
        "verify",
        "--export",
        s(&copied),
        "--key",
        s(&pubfile),
    ]);
    let line = one_line_error(&out, 1);
    assert!(
        line.contains(&format!("FAIL: seq {seq} (line {})", i + 1)) && line.contains("edited"),
        "{line}"
    );

    // The wrong key is refused too (a log of another appliance).
    let other = Verifier::new(key.name(), [7; 32])
        .expect("other key")
        .vkey();
    let out = airlock(&["audit", "verify", "--export", s(&export), "--key", &other]);
    let line = one_line_error(&out, 1);
    assert!(line.contains("FAIL:"), "{line}");
}

#[test]
fn a_user_is_denied_the_audit_api_and_the_denial_is_recorded() {
    let fx = fixture();
    let server = serve(&fx);
    let user = fx.client(Some("user"));
    let resp = user.get("/v1/audit/checkpoint");
    assert_eq!(resp.status, 403);
    assert!(resp.openai_error().contains("auditor"), "{}", resp.text());
    let resp = user
        .request("POST", "/v1/audit/erase", Some(br#"{"subject":"case-1"}"#))
        .expect("POST");
    assert_eq!(resp.status, 403);
    // Not even the auditor may erase, nor the privacy officer read.
    let auditor = fx.client(Some("auditor"));
    let resp = auditor
        .request("POST", "/v1/audit/erase", Some(br#"{"subject":"case-1"}"#))
        .expect("POST");
    assert_eq!(resp.status, 403);
    assert_eq!(
        fx.client(Some("privacy")).get("/v1/audit/records").status,
        403
    );

    let user_fp = fingerprint(&fx.pki("user.crt"));
    let all = records(&fx);
    let denials: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| r["kind"] == "access.denied")
        .collect();
    assert_eq!(denials.len(), 4, "{denials:?}");
    let first = denials[0];
    assert_eq!(first["actor"]["fingerprint"], user_fp.as_str());
    assert_eq!(first["actor"]["roles"], serde_json::json!(["user"]));
    assert_eq!(first["status"], "403");
    assert_eq!(first["params"]["route"], "/v1/audit/checkpoint");
    assert_eq!(first["params"]["method"], "GET");
    assert!(
        first["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
    );
    assert_eq!(first["request_id"].as_str().map(str::len), Some(32));
    assert_eq!(denials[3]["params"]["route"], "/v1/audit/records");
    // Records are dense and chained in the order they were written.
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r["seq"], i as u64);
        if i > 0 {
            assert_eq!(r["prev"], all[i - 1]["hash"]);
        }
    }

    // Paging and bad queries.
    let page = auditor.get("/v1/audit/records?from=1&limit=2");
    assert_eq!(page.status, 200);
    let seqs: Vec<u64> = page
        .text()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect();
    assert_eq!(seqs, [1, 2]);
    for bad in ["limit=0", "limit=100000", "from=x", "color=red"] {
        let resp = auditor.get(&format!("/v1/audit/records?{bad}"));
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
        resp.openai_error();
    }

    // The privacy officer erases a subject; the record names the officer.
    let privacy = fx.client(Some("privacy"));
    let resp = privacy
        .request(
            "POST",
            "/v1/audit/erase",
            Some(br#"{"subject":"case-4711"}"#),
        )
        .expect("POST");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seq = resp.json()["seq"].as_u64().expect("seq");
    for bad in [&br#"{"subject":""}"#[..], br#"{"who":"x"}"#, b"not json"] {
        let resp = privacy
            .request("POST", "/v1/audit/erase", Some(bad))
            .expect("POST");
        assert_eq!(resp.status, 400, "{}", resp.text());
    }
    let all = records(&fx);
    let erase = &all[seq as usize];
    assert_eq!(erase["kind"], "audit.erase");
    assert_eq!(erase["subject"], "case-4711");
    assert_eq!(
        erase["actor"]["fingerprint"],
        fingerprint(&fx.pki("privacy.crt")).as_str()
    );

    // Audit metrics for the operator.
    let metrics = fx.client(Some("operator")).get("/metrics").text();
    assert!(
        metrics.contains("airlock_audit_appends_total{result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("airlock_audit_append_duration_seconds_count"),
        "{metrics}"
    );
    let ready = fx.client(Some("user")).get("/readyz").json();
    assert_eq!(ready["components"]["audit"]["ready"], true, "{ready}");
    stop(server);

    // Offline: an inclusion proof of the erase record and the record itself.
    let st = state(&fx);
    let out = airlock(&[
        "audit",
        "prove",
        "--state",
        s(&st),
        "--seq",
        &seq.to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("inclusion proof (RFC 6962)"),
        "{}",
        stdout(&out)
    );
    let out = airlock(&["audit", "show", &seq.to_string(), "--state", s(&st)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show JSON");
    assert_eq!(shown["record"]["kind"], "audit.erase");
    // And an offline erase appends to the stopped log, which still verifies.
    let out = airlock(&["audit", "erase", "--subject", "case-9", "--state", s(&st)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let vkey = stdout(&airlock(&["audit", "pubkey", "--state", s(&st)]));
    let out = airlock(&["audit", "verify", "--state", s(&st), "--key", vkey.trim()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn denials_are_rate_limited_before_they_reach_the_audit_log() {
    // A certificate the CA issued but the policy grants nothing: each denial is an audit
    // record, so its requests are counted against the per-certificate rate first.
    let fx = fixture();
    let mut policy = std::fs::read_to_string(fx.policy()).expect("policy");
    policy = policy.replace("[limits]\n", "[limits]\nrequests_per_minute = 3\n");
    std::fs::write(fx.policy(), policy).expect("write policy");
    let server = serve(&fx);
    let stranger = fx.client(Some("stranger"));
    let statuses: Vec<u16> = (0..10).map(|_| stranger.get("/v1/models").status).collect();
    assert_eq!(statuses[..3], [403, 403, 403], "{statuses:?}");
    assert!(statuses[3..].iter().all(|&s| s == 429), "{statuses:?}");
    // Liveness is limited too (hardening issue, finding 3: a flood of `/healthz` from a
    // certificate without a role grew the logs and metrics without bound).
    assert_eq!(stranger.get("/healthz").status, 429);
    let denied: Vec<serde_json::Value> = records(&fx)
        .into_iter()
        .filter(|r| r["kind"] == "access.denied")
        .collect();
    // The three role denials, and the first refusal of the flood (429) so the report shows
    // who hit the limit; the other eight refusals are only counted in metrics.
    let statuses: Vec<&str> = denied
        .iter()
        .map(|r| r["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["403", "403", "403", "429"], "{denied:?}");
    assert!(
        denied[3]["params"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("rate limit of 3 requests per minute")),
        "{denied:?}"
    );
    let fp = fingerprint(&fx.pki("stranger.crt"));
    assert!(
        denied
            .iter()
            .all(|r| r["actor"]["fingerprint"] == fp.as_str())
    );
    stop(server);
}

#[test]
fn a_corrupted_store_refuses_to_start() {
    let fx = fixture();
    stop(serve(&fx));
    std::fs::write(state(&fx).join("audit/checkpoint"), "not a signed note\n").expect("write");
    let out = command()
        .args(["serve", "--config"])
        .arg(fx.policy())
        .output()
        .expect("run serve");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("airlock: cannot open the audit log in ") && last.contains("is corrupt"),
        "{err}"
    );
}

/// Fail closed: with the audit directory on a read-only mount (a mount namespace of its
/// own, so nothing outside the test sees it) the service does not start.
#[test]
fn a_read_only_audit_dir_stops_the_service_from_starting() {
    let fx = fixture();
    stop(serve(&fx));
    let audit_dir = state(&fx).join("audit");
    let script = format!(
        "mount --bind '{d}' '{d}' && mount -o remount,ro,bind '{d}' && exec \"$0\" serve --config \"$1\"",
        d = audit_dir.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(crate::common::BIN)
        .arg(fx.policy())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run unshare (util-linux)");
    let err = stderr(&out);
    assert!(
        !err.contains("mount:") && !err.contains("unshare:"),
        "this test needs root and mount namespaces: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("airlock: cannot open the audit log in ")
            && last.contains("Read-only file system"),
        "{err}"
    );
}

#[test]
fn offline_commands_create_nothing_and_explain_themselves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    let out = airlock(&[
        "audit",
        "export",
        "--state",
        s(&missing),
        "--out",
        s(&dir.path().join("x")),
    ]);
    assert!(one_line_error(&out, 1).contains("does not exist"));
    assert!(!missing.exists(), "created the state dir");
    let out = airlock(&[
        "audit",
        "verify",
        "--state",
        s(dir.path()),
        "--key",
        "x+00000000+AA==",
    ]);
    one_line_error(&out, 1);
    let out = airlock(&["audit", "prove", "--state", s(dir.path()), "--seq", "0"]);
    assert!(one_line_error(&out, 1).contains("no audit log in"));
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("ls").count(),
        0,
        "created files"
    );
    // Usage errors: exactly one source for verify, a key always.
    let out = airlock(&["audit", "verify", "--key", "k"]);
    one_line_error(&out, 64);
    let out = airlock(&[
        "audit", "verify", "--export", "a", "--state", "b", "--key", "k",
    ]);
    one_line_error(&out, 64);
    for sub in ["pubkey", "verify", "export", "prove", "erase", "show"] {
        let out = airlock(&["audit", sub, "--help"]);
        assert!(out.status.success(), "{sub}");
        assert!(
            stdout(&out).contains(&format!("airlock audit {sub}")),
            "{sub}: no example"
        );
    }
}

/// Fail closed at run time: the audit directory on a tiny tmpfs (in a mount namespace of
/// the service's own) fills up; from the first failed flush `/readyz` reports the audit
/// log not ready, audit endpoints answer 503 `audit_unavailable`, denials stay 403.
#[test]
fn a_full_audit_disk_makes_the_service_not_ready() {
    let fx = fixture();
    // No free-space reserve: this test is about the write that fails when the disk is full
    // (the reserve, which refuses earlier, has its own test in `hardening`).
    let mut policy = std::fs::read_to_string(fx.policy()).expect("policy");
    policy.push_str("\n[audit]\nreserve_free_mib = 0\n");
    std::fs::write(fx.policy(), policy).expect("write policy");
    let audit_dir = state(&fx).join("audit");
    std::fs::create_dir_all(&audit_dir).expect("mkdir");
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs '{}' && exec \"$0\" serve --config \"$1\"",
        audit_dir.display()
    );
    let child = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(crate::common::BIN)
        .arg(fx.policy())
        .env_remove("RUST_BACKTRACE")
        // Only warnings and errors: stderr is a pipe read at exit, and an access line per
        // request would fill it and block the server.
        .env("AIRLOCK_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run unshare (util-linux)");
    let mut server = Server { child };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", fx.port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            let (_, err) = server.wait(Duration::from_secs(1));
            panic!("serve exited ({status}); this test needs root and mount namespaces: {err}");
        }
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let user = fx.client(Some("user"));
    let get = |path: &str| user.get(path);
    let audit_ready = || get("/readyz").json()["components"]["audit"]["ready"] == true;
    assert!(audit_ready(), "writable at start");
    let mut denied = 0;
    while audit_ready() {
        for _ in 0..10 {
            assert_eq!(get("/metrics").status, 403, "a denial stays a denial");
            denied += 1;
        }
        assert!(denied < 5000, "256 KiB never filled up");
    }
    let ready = user.get("/readyz");
    assert_eq!(ready.status, 503);
    let detail = ready.json()["components"]["audit"]["detail"].to_string();
    assert!(detail.contains("not writable"), "{detail}");
    let resp = fx.client(Some("auditor")).get("/v1/audit/checkpoint");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.json()["error"]["code"], "audit_unavailable");
    assert_eq!(user.get("/metrics").status, 403);
    let err = stop(server);
    assert!(err.contains("No space left on device"), "{err}");
}
