//! Signed model bundles through the real `airlock` binary, as a site security team
//! would use it: keys and bundles made on an "offline workstation" directory, installed
//! into an appliance state directory, tampered copies rejected.
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::airlock;

pub use airlock_testkit::default_model;

const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Fails with exit code `code` and one stderr line; returns that line.
#[track_caller]
fn fails(out: Output, code: i32) -> String {
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("airlock: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    lines[0].to_owned()
}

/// An offline workstation (keys/) and an appliance (pki/, airlock.toml, state/).
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(threshold: usize) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = Site { dir };
        for name in ["alice", "bob"] {
            let out = ok(airlock(&[
                "keys",
                "generate",
                "--out",
                s(&site.keys()),
                "--name",
                name,
            ]));
            assert!(out.contains("key id "), "{out}");
        }
        ok(airlock(&["pki", "dev", "--out", s(&site.path("pki"))]));
        let policy = format!(
            "state_dir = \"state\"\n[tls]\ncert = \"pki/server.crt\"\nkey = \"pki/server.key\"\n\
             client_ca = [\"pki/ca.crt\"]\n\n[trust]\nthreshold = {threshold}\nallowed_names = [\"smollm2-*\", \"tiny-*\"]\n\
             [[trust.publisher]]\nname = \"alice\"\nkey_file = \"keys/alice.pub\"\n\
             [[trust.publisher]]\nname = \"bob\"\nkey = \"{}\"\n",
            std::fs::read_to_string(site.keys().join("bob.pub"))
                .expect("bob.pub")
                .trim()
        );
        std::fs::write(site.policy(), policy).expect("policy");
        site
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn keys(&self) -> PathBuf {
        self.path("keys")
    }
    fn policy(&self) -> PathBuf {
        self.path("airlock.toml")
    }

    /// `bundle create` + `bundle sign` by each of `signers`.
    fn bundle(
        &self,
        model: &Path,
        name: &str,
        version: &str,
        seq: u64,
        signers: &[&str],
    ) -> PathBuf {
        let out = self.path(&format!("{name}-{version}.airlock"));
        let printed = ok(airlock(&[
            "bundle",
            "create",
            "--model",
            s(model),
            "--name",
            name,
            "--version",
            version,
            "--sequence",
            &seq.to_string(),
            "--expires",
            "2099-01-01",
            "--out",
            s(&out),
        ]));
        assert!(printed.contains("architecture: llama"), "{printed}");
        for k in signers {
            let key = self.keys().join(format!("{k}.key"));
            ok(airlock(&["bundle", "sign", s(&out), "--key", s(&key)]));
        }
        out
    }

    fn install(&self, bundle: &Path, activate: bool) -> Output {
        let policy = self.policy();
        let mut args = vec!["bundle", "install", s(bundle), "--config", s(&policy)];
        if activate {
            args.push("--activate");
        }
        airlock(&args)
    }

    fn list(&self) -> String {
        ok(airlock(&["models", "list", "--config", s(&self.policy())]))
    }

    /// The audit log's records (`airlock audit export`), as JSON.
    fn audit_records(&self) -> Vec<serde_json::Value> {
        let out = self.path("audit.jsonl");
        ok(airlock(&[
            "audit",
            "export",
            "--state",
            s(&self.path("state")),
            "--out",
            s(&out),
        ]));
        let text = std::fs::read_to_string(&out).expect("export");
        text.lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    }

    fn staging_is_empty(&self) -> bool {
        std::fs::read_dir(self.path("state/models/.staging"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    }
}

/// The acceptance run: two publisher keys, a bundle of the real default model signed by
/// both, verified, installed and activated; a copy with one flipped byte is rejected and
/// the active model is unchanged.
#[test]
fn two_publishers_sign_install_activate_and_tampered_copy_is_rejected() {
    let site = Site::new(2);
    let model = default_model();
    let bundle = site.bundle(&model, "smollm2-135m", "1.0.0", 1, &["alice", "bob"]);

    let verified = ok(airlock(&[
        "bundle",
        "verify",
        s(&bundle),
        "--config",
        s(&site.policy()),
    ]));
    assert!(verified.contains("signed by:    alice"), "{verified}");
    assert!(verified.contains("signed by:    bob"), "{verified}");
    assert!(verified.contains(MODEL_SHA256), "{verified}");
    let alice = site.keys().join("alice.pub");
    let adhoc = airlock(&[
        "bundle",
        "verify",
        s(&bundle),
        "--trust-key",
        s(&alice),
        "--threshold",
        "1",
    ]);
    assert!(ok(adhoc).contains("OK: 1 of threshold 1"));

    let installed = ok(site.install(&bundle, true));
    assert!(
        installed.contains("installed smollm2-135m 1.0.0 (sequence 1)"),
        "{installed}"
    );
    assert!(installed.ends_with(", active\n"), "{installed}");
    let list = site.list();
    assert!(
        list.contains("smollm2-135m 1.0.0 sequence 1 ACTIVE signed by alice, bob"),
        "{list}"
    );
    assert!(list.contains(MODEL_SHA256), "{list}");
    let gguf = site.path("state/models/smollm2-135m/1.0.0/files/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(
        std::fs::metadata(&gguf).expect("installed").len(),
        std::fs::metadata(&model).expect("model").len()
    );

    // A copy with one byte flipped in the middle of the model data.
    let tampered = site.path("tampered.airlock");
    let mut bytes = std::fs::read(&bundle).expect("read bundle");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&tampered, bytes).expect("write copy");
    // Its header is the installed one's: refused as a rollback before its payload is read.
    let err = fails(site.install(&tampered, true), 1);
    assert!(err.contains("rollback refused"), "{err}");
    let err = fails(
        airlock(&["bundle", "verify", s(&tampered), "--trust-key", s(&alice)]),
        1,
    );
    assert!(
        err.contains("SHA-256") && err.contains("does not match the manifest"),
        "{err}"
    );
    assert_eq!(site.list(), list, "active model unchanged");
    assert!(site.staging_is_empty());
}

/// A tampered upgrade (sequence 2, one byte flipped) is refused at install with the
/// digest error; the active version, staging and the high-water mark are unchanged; the
/// untampered upgrade then installs, activates, and `models rollback` goes back.
#[test]
fn tampered_upgrade_is_rejected_then_good_upgrade_and_explicit_rollback() {
    let site = Site::new(2);
    let model = default_model();
    let v1 = site.bundle(&model, "smollm2-135m", "1.0.0", 1, &["alice", "bob"]);
    ok(site.install(&v1, true));
    let v2 = site.bundle(&model, "smollm2-135m", "1.1.0", 2, &["alice", "bob"]);
    let before = site.list();

    let tampered = site.path("v2-tampered.airlock");
    let mut bytes = std::fs::read(&v2).expect("read");
    let at = bytes.len() - 4096;
    bytes[at] ^= 0x01;
    std::fs::write(&tampered, bytes).expect("write");
    let err = fails(site.install(&tampered, true), 1);
    assert!(err.contains("does not match the manifest"), "{err}");
    assert_eq!(site.list(), before);
    assert!(site.staging_is_empty());
    assert_eq!(
        std::fs::read_to_string(site.path("state/model-sequences/smollm2-135m")).expect("mark"),
        "1\n"
    );

    ok(site.install(&v2, false));
    assert!(
        site.list().contains("smollm2-135m 1.0.0 sequence 1 ACTIVE"),
        "install alone does not activate"
    );
    ok(airlock(&[
        "models",
        "activate",
        "smollm2-135m",
        "1.1.0",
        "--config",
        s(&site.policy()),
    ]));
    assert!(site.list().contains("smollm2-135m 1.1.0 sequence 2 ACTIVE"));
    let back = ok(airlock(&[
        "models",
        "rollback",
        "smollm2-135m",
        "--config",
        s(&site.policy()),
    ]));
    assert!(back.contains("rolled back: smollm2-135m 1.0.0"), "{back}");
    assert!(site.list().contains("smollm2-135m 1.0.0 sequence 1 ACTIVE"));
    let err = fails(
        airlock(&[
            "models",
            "rollback",
            "smollm2-135m",
            "--config",
            s(&site.policy()),
        ]),
        1,
    );
    assert!(err.contains("no previous version"), "{err}");

    // Every step is in the audit log, the rejection with its reason.
    let records = site.audit_records();
    let kinds: Vec<&str> = records
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .filter(|k| k.starts_with("bundle.") || k.starts_with("model."))
        .collect();
    assert_eq!(
        kinds,
        [
            "bundle.verify",
            "bundle.install",
            "model.activate", // v1 --activate
            "bundle.verify",
            "bundle.reject", // tampered v2
            "bundle.verify",
            "bundle.install", // v2
            "model.activate",
            "model.rollback",
        ]
    );
    let reject = records
        .iter()
        .find(|r| r["kind"] == "bundle.reject")
        .expect("reject");
    assert!(
        reject.to_string().contains("does not match the manifest"),
        "{reject}"
    );
    let install = records
        .iter()
        .find(|r| r["kind"] == "bundle.install")
        .expect("install");
    assert!(install.to_string().contains(MODEL_SHA256), "{install}");
}

fn tiny_gguf(dir: &Path) -> PathBuf {
    let w: Vec<f32> = (0..64 * 2).map(|i| (i as f32).cos()).collect();
    let mut g = airlock_gguf::write::GgufWriter::new();
    g.metadata("general.architecture", "llama")
        .metadata("general.license", "apache-2.0");
    g.tensor_from_f32(
        "blk.0.attn_q.weight",
        &[64, 2],
        airlock_gguf::GgmlType::Q8_0,
        &w,
    )
    .expect("tensor");
    let p = dir.join("tiny.gguf");
    g.write_to(&p).expect("write gguf");
    p
}

/// Below threshold, rollback (also after the model directory is deleted), a name the
/// policy does not allow, and a duplicate signature, each refused with its message.
#[test]
fn policy_refusals_through_the_cli() {
    let site = Site::new(2);
    let model = tiny_gguf(site.dir.path());
    let one = site.bundle(&model, "tiny-llama", "1.0.0", 1, &["alice"]);
    let err = fails(site.install(&one, true), 1);
    assert!(
        err.contains("signed by 1 distinct trusted key(s), threshold is 2"),
        "{err}"
    );
    let err = fails(
        airlock(&[
            "bundle",
            "sign",
            s(&one),
            "--key",
            s(&site.keys().join("alice.key")),
        ]),
        1,
    );
    assert!(err.contains("already signed by key"), "{err}");

    let good = site.bundle(&model, "tiny-llama", "2.0.0", 5, &["alice", "bob"]);
    // Installed only: activation would load-test `tiny_gguf`, which no engine can run.
    ok(site.install(&good, false));
    let old = site.bundle(&model, "tiny-llama", "1.5.0", 4, &["alice", "bob"]);
    let err = fails(site.install(&old, true), 1);
    assert!(
        err.contains("rollback refused") && err.contains("high-water mark 5"),
        "{err}"
    );
    std::fs::remove_dir_all(site.path("state/models/tiny-llama")).expect("delete model");
    let err = fails(site.install(&old, true), 1);
    assert!(
        err.contains("rollback refused"),
        "deleting the model does not reopen rollback: {err}"
    );

    let other = site.bundle(&model, "other", "1.0.0", 1, &["alice", "bob"]);
    let err = fails(site.install(&other, true), 1);
    assert!(err.contains("bundle name `other` is not allowed"), "{err}");
    assert!(site.staging_is_empty());
}

/// `bundle create` refuses a file that is not a GGUF; `bundle install` without a
/// [trust] section is a configuration error (64).
#[test]
fn non_gguf_and_missing_trust_are_refused() {
    let site = Site::new(1);
    let junk = site.path("junk.gguf");
    std::fs::write(&junk, b"definitely not GGUF").expect("write");
    let out = site.path("junk.airlock");
    let err = fails(
        airlock(&[
            "bundle",
            "create",
            "--model",
            s(&junk),
            "--name",
            "tiny-x",
            "--version",
            "1.0.0",
            "--sequence",
            "1",
            "--out",
            s(&out),
        ]),
        1,
    );
    assert!(err.contains("not a valid GGUF"), "{err}");
    assert!(!out.exists());

    let model = tiny_gguf(site.dir.path());
    let b = site.bundle(&model, "tiny-llama", "1.0.0", 1, &["alice"]);
    let text = std::fs::read_to_string(site.policy()).expect("policy");
    let cut = text.find("[trust]").expect("trust section");
    std::fs::write(site.policy(), &text[..cut]).expect("policy without trust");
    let err = fails(site.install(&b, true), 64);
    assert!(err.contains("trust: missing"), "{err}");
}

/// `airlock dev --model` installs the model as a dev-signed bundle, and a second run is
/// idempotent (no sequence/high-water failure).
#[test]
fn dev_installs_a_signed_model_idempotently() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    // The default model: activation load-tests it (a file the engine cannot load, such as
    // `tiny_gguf`, is refused before it becomes active).
    let model = default_model();
    for expected in ["installed and active", "already active"] {
        let mut child = crate::common::command()
            .args(["dev", "--state", s(&state), "--model", s(&model)])
            .args([
                "--listen",
                &format!("127.0.0.1:{}", crate::common::free_port()),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn dev");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = lines.next().expect("a line").expect("read");
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            line.starts_with("Model smollm2-135m-instruct.q4_1 1.0.0-dev.1"),
            "{line}"
        );
        assert!(line.contains(expected), "{line}");
    }
    let list = ok(airlock(&["models", "list", "--state", s(&state)]));
    assert!(
        list.contains(
            "smollm2-135m-instruct.q4_1 1.0.0-dev.1 sequence 1 ACTIVE signed by dev-publisher"
        ),
        "{list}"
    );
    assert!(state.join("dev-keys/dev-publisher.pub").is_file());
}

/// Over HTTP as the admin: POST the real model's bundle (signed by two publishers) with
/// `?activate=true`; a tampered upgrade is refused with 400 and the active model is
/// unchanged; the good upgrade installs, activates and rolls back through the endpoints;
/// a user certificate gets 403.
#[test]
fn admin_endpoints_install_activate_reject_and_roll_back() {
    /// Waits until `/readyz` says `smollm2-135m VERSION` is served (hot reload runs on a
    /// thread of its own), then checks that a generation on it works.
    fn serves(user: &crate::common::Client, version: &str) {
        let want = format!("serving smollm2-135m {version}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let ready = user.get("/readyz").json();
            if ready["components"]["model"]["detail"].as_str() == Some(want.as_str()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{want} never came: {ready}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let body = br#"{"model":"smollm2-135m","prompt":"The capital of France is","max_tokens":3,"temperature":0}"#;
        let r = user
            .request("POST", "/v1/completions", Some(body))
            .expect("completion");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["usage"]["completion_tokens"], 3);
    }

    let fx = crate::common::Fixture::new();
    let site = Site::new(2);
    let trust = std::fs::read_to_string(site.policy()).expect("policy");
    let trust = &trust[trust.find("[trust]").expect("trust")..];
    let alice = std::fs::read_to_string(site.keys().join("alice.pub")).expect("alice.pub");
    let trust = trust.replace(
        "key_file = \"keys/alice.pub\"",
        &format!("key = \"{}\"", alice.trim()),
    );
    let mut policy = std::fs::read_to_string(fx.policy()).expect("fixture policy");
    policy.push('\n');
    policy.push_str(&trust);
    std::fs::write(fx.policy(), policy).expect("policy with trust");
    let model = default_model();
    let v1 = site.bundle(&model, "smollm2-135m", "1.0.0", 1, &["alice", "bob"]);
    let v2 = site.bundle(&model, "smollm2-135m", "1.1.0", 2, &["alice", "bob"]);
    let mut tampered = std::fs::read(&v2).expect("v2");
    let at = tampered.len() / 3;
    tampered[at] ^= 0x04;

    let server = fx.serve();
    let admin = fx.client(Some("admin"));
    let user = fx.client(Some("user"));
    let post = |client: &crate::common::Client, path: &str, body: &[u8]| {
        client.request("POST", path, Some(body)).expect("request")
    };
    let v1_bytes = std::fs::read(&v1).expect("v1");
    let denied = post(&user, "/v1/admin/bundles?activate=true", &v1_bytes);
    assert_eq!(denied.status, 403);

    let r = post(&admin, "/v1/admin/bundles?activate=true", &v1_bytes);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["active"], true);
    assert_eq!(r.json()["sha256"], MODEL_SHA256);
    // Hot reload: the running service now answers with the activated model.
    serves(&user, "1.0.0");

    let r = post(&admin, "/v1/admin/bundles?activate=true", &tampered);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.openai_error().contains("does not match the manifest"),
        "{}",
        r.text()
    );
    serves(&user, "1.0.0"); // the rejected bundle changed nothing
    let listed = admin.get("/v1/admin/models").json();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["data"][0]["version"], "1.0.0");
    assert_eq!(listed["data"][0]["active"], true);

    let r = post(
        &admin,
        "/v1/admin/bundles",
        &std::fs::read(&v2).expect("v2"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["active"], false);
    let r = post(
        &admin,
        "/v1/admin/models/smollm2-135m/activate",
        br#"{"version":"1.1.0"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], "1.1.0");
    serves(&user, "1.1.0");
    let r = post(&admin, "/v1/admin/models/smollm2-135m/rollback", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], "1.0.0");
    serves(&user, "1.0.0");
    let r = post(&admin, "/v1/admin/bundles", &v1_bytes);
    assert_eq!(r.status, 400);
    assert!(
        r.openai_error().contains("rollback refused"),
        "{}",
        r.text()
    );

    // Hardening finding 10: activation never goes back below the high-water mark (that
    // is the explicit rollback's job).
    let activate = |version: &str| {
        let body = format!(r#"{{"version":"{version}"}}"#);
        post(
            &admin,
            "/v1/admin/models/smollm2-135m/activate",
            body.as_bytes(),
        )
    };
    let r = activate("1.1.0");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = activate("1.0.0");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.openai_error().contains("high-water mark"), "{}", r.text());
    serves(&user, "1.1.0");

    // Finding 5: a validly signed bundle whose model does not load is installed but not
    // activated; the active model keeps serving.
    let broken_dir = site.path("broken");
    std::fs::create_dir_all(&broken_dir).expect("mkdir");
    let broken = site.bundle(
        &tiny_gguf(&broken_dir),
        "smollm2-135m",
        "1.2.0",
        3,
        &["alice", "bob"],
    );
    let r = post(
        &admin,
        "/v1/admin/bundles?activate=true",
        &std::fs::read(&broken).expect("broken"),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.openai_error().contains("does not load"), "{}", r.text());
    serves(&user, "1.1.0");
    drop(server);

    // Had such a version become active anyway (state written by hand, or by an older
    // release), the service starts, serves what loads and names the rest in /readyz.
    let pointer = fx.dir.path().join("state/models/smollm2-135m/active.json");
    let text = std::fs::read_to_string(&pointer).expect("active pointer");
    assert!(text.contains("1.1.0"), "{text}");
    std::fs::write(&pointer, text.replacen("1.1.0", "1.2.0", 1)).expect("point at 1.2.0");
    let _server = fx.serve();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ready = user.get("/readyz");
        let detail = ready.json()["components"]["model"]["detail"].to_string();
        if detail.contains("not loaded") {
            assert_eq!(ready.status, 503, "{detail}");
            assert!(detail.contains("block_count"), "{detail}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{detail}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
