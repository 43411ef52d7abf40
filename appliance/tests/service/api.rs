//! The OpenAI-compatible API end to end: `airlock dev` installs the real default model as a
//! signed bundle and serves it, locked down; clients speak real mTLS. Answers are compared
//! with llama.cpp's greedy answers from `appliance/testdata/smollm2-llamacpp.json`.
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bundle::default_model;
use crate::common::{BIN, Client, Fixture, command, free_port};

pub(crate) const MODEL: &str = "smollm2-135m-instruct.q4_1";

pub(crate) use airlock_testkit::reference;

/// `airlock dev` with the default model, killed on drop. Its stdout (the instructions it
/// prints) goes to `DIR/dev.out`.
pub(crate) struct Dev {
    child: Child,
    pub(crate) fixture: Fixture,
    _dir: tempfile::TempDir,
    ignore_xfsz: bool,
    /// The GGUF `airlock dev` packs (`--model`).
    model: std::path::PathBuf,
}

impl Dev {
    pub(crate) fn start() -> Dev {
        Dev::start_with(false)
    }

    /// Started with SIGXFSZ ignored (the disposition survives `exec`), so that a file-size
    /// limit set later ([`Dev::limit_file_size`]) makes the service's writes fail with
    /// EFBIG, as a full disk fails them, instead of killing it.
    pub(crate) fn start_ignoring_sigxfsz() -> Dev {
        Dev::start_with(true)
    }

    /// `airlock dev --model MODEL` (another GGUF than the default).
    pub(crate) fn start_with_model(model: &Path) -> Dev {
        Dev::start_on(false, model)
    }

    fn start_with(ignore_xfsz: bool) -> Dev {
        Dev::start_on(ignore_xfsz, &default_model())
    }

    fn start_on(ignore_xfsz: bool, model: &Path) -> Dev {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Dev::spawn(&dir.path().join("state"), port, ignore_xfsz, model);
        let fixture = fixture_when_written(&dir.path().join("state"), port);
        let mut dev = Dev {
            child,
            fixture,
            _dir: dir,
            ignore_xfsz,
            model: model.to_owned(),
        };
        dev.wait_ready();
        dev
    }

    /// The service's pid (`airlock dev` serves in its own process).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The state directory (`--state`).
    pub(crate) fn state(&self) -> std::path::PathBuf {
        self._dir.path().join("state")
    }

    /// What `airlock dev` printed on stdout so far.
    pub(crate) fn printed(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("dev.out")).unwrap_or_default()
    }

    /// Sets RLIMIT_FSIZE of the running service to `bytes` (prlimit, util-linux): its
    /// writes past that size fail with EFBIG. Needs [`Dev::start_ignoring_sigxfsz`].
    pub(crate) fn limit_file_size(&self, bytes: u64) {
        assert!(self.ignore_xfsz, "SIGXFSZ would kill the service");
        let out = std::process::Command::new("prlimit")
            .args([
                "--pid",
                &self.pid().to_string(),
                &format!("--fsize={bytes}"),
            ])
            .output()
            .expect("run prlimit (util-linux)");
        assert!(
            out.status.success(),
            "prlimit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILL, and waits for the process to be gone (the state dir stays).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit (`service.stop` and the final checkpoint are
    /// then in the log, and the database is free for `airlock audit`).
    pub(crate) fn stop(&mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(status.success(), "airlock dev exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "airlock dev did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the service, inserts `policy` text before the dev policy's `[egress]` table,
    /// and starts it again on the same state dir and port.
    pub(crate) fn restart_with(&mut self, policy: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let state = self._dir.path().join("state");
        let path = state.join("airlock.toml");
        let text = std::fs::read_to_string(&path).expect("dev policy");
        let text = text.replacen("[egress]", &format!("{policy}\n[egress]"), 1);
        std::fs::write(&path, text).expect("write policy");
        self.child = Dev::spawn(&state, self.fixture.port, self.ignore_xfsz, &self.model);
        self.wait_ready();
    }

    fn spawn(state: &Path, port: u16, ignore_xfsz: bool, model: &Path) -> Child {
        let mut cmd = if ignore_xfsz {
            let mut c = std::process::Command::new("bash");
            c.arg("-c")
                .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
                .arg(BIN)
                .env_remove("AIRLOCK_CONFIG")
                .env_remove("RUST_BACKTRACE");
            c
        } else {
            command()
        };
        let out = std::fs::File::create(state.with_file_name("dev.out")).expect("dev.out");
        cmd.args(["dev", "--state"])
            .arg(state)
            .arg("--model")
            .arg(model)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn airlock dev")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("airlock dev exited early: {status}");
            }
            if let Ok(r) = self.client("user").request("GET", "/readyz", None)
                && r.status == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "airlock dev never became ready");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The default model as a bundle of `version`/`sequence` signed by the dev publisher key,
    /// written into `dir`.
    pub(crate) fn signed_bundle(
        &self,
        dir: &Path,
        version: &str,
        sequence: u64,
    ) -> std::path::PathBuf {
        let key = self._dir.path().join("state/dev-keys/dev-publisher.key");
        self.bundle_signed_by(dir, version, sequence, &key)
    }

    /// The default model as a bundle of `version`/`sequence` signed by `key`.
    pub(crate) fn bundle_signed_by(
        &self,
        dir: &Path,
        version: &str,
        sequence: u64,
        key: &Path,
    ) -> std::path::PathBuf {
        let bundle = dir.join(format!("{version}.airlock"));
        let run = |args: &[&std::ffi::OsStr]| {
            let out = command().args(args).output().expect("airlock");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let model = default_model();
        let sequence = sequence.to_string();
        run(&[
            "bundle".as_ref(),
            "create".as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
            "--name".as_ref(),
            MODEL.as_ref(),
            "--version".as_ref(),
            version.as_ref(),
            "--sequence".as_ref(),
            sequence.as_ref(),
            "--expires".as_ref(),
            "2099-01-01".as_ref(),
            "--out".as_ref(),
            bundle.as_os_str(),
        ]);
        run(&[
            "bundle".as_ref(),
            "sign".as_ref(),
            bundle.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ]);
        bundle
    }

    /// Waits until `/readyz` says the model is served at `version` (hot reload runs on a
    /// thread of its own).
    pub(crate) fn wait_serving(&self, version: &str) {
        let want = format!("serving {MODEL} {version}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self.client("user").get("/readyz").json();
            if ready["components"]["model"]["detail"] == want.as_str() {
                return;
            }
            assert!(Instant::now() < deadline, "{want} never came: {ready}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends a streamed completion of up to `max_tokens` and reads it past its first text
    /// chunk; returns the open connection and the bytes read so far.
    pub(crate) fn open_stream(&self, max_tokens: u32) -> (crate::common::Tls, Vec<u8>) {
        use std::io::{Read, Write};
        let body = json!({"model": MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": max_tokens, "temperature": 0, "stream": true})
            .to_string();
        let mut tls = self.client("user").connect().expect("connect");
        let head = format!(
            "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).expect("head");
        tls.write_all(body.as_bytes()).expect("body");
        tls.flush().expect("flush");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("\"text\":\"") {
            let n = tls.read(&mut buf).expect("read");
            assert!(n > 0, "stream ended early");
            seen.extend_from_slice(&buf[..n]);
        }
        (tls, seen)
    }

    pub(crate) fn client(&self, role: &str) -> Client {
        self.fixture.client(Some(role))
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> crate::common::Response {
        self.client("user")
            .request("POST", path, Some(body.to_string().as_bytes()))
            .expect("POST")
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The dev state's PKI as a client fixture, once `airlock dev` has written it.
fn fixture_when_written(state: &Path, port: u16) -> Fixture {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.join("airlock.toml").is_file() {
        assert!(Instant::now() < deadline, "airlock dev wrote no policy");
        std::thread::sleep(Duration::from_millis(100));
    }
    Fixture::from_dir(state, port)
}

pub(crate) fn chat_body(messages: &Value, extra: Value) -> Value {
    let mut body =
        json!({"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": 128});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// SSE `data:` payloads of a streamed response, in order.
pub(crate) fn sse_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_owned))
        .collect()
}

#[test]
fn chat_and_completions_give_llama_cpp_greedy_answers_streamed_or_not() {
    let dev = Dev::start();
    let reference = reference();
    let cases = reference["chat"].as_array().expect("chat cases");
    // Case 0: rendered by the model's template; its answer has no near-tie (margins >= 0.3).
    let case = &cases[0];
    let expected = case["text"].as_str().expect("text");
    let r = dev.post(
        "/v1/chat/completions",
        &chat_body(&case["messages"], json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["choices"][0]["message"]["content"], expected);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let prompt_ids = case["prompt_ids"].as_array().expect("ids").len();
    assert_eq!(v["usage"]["prompt_tokens"], prompt_ids);

    // The same request streamed: the deltas concatenate to the same text, then usage, [DONE].
    let r = dev.post(
        "/v1/chat/completions",
        &chat_body(
            &case["messages"],
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = sse_events(&r.text());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk JSON"))
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, expected);
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], prompt_ids);

    // Case 2: raw ChatML through /v1/completions (special tokens parsed, as llama.cpp does).
    let case = &cases[2];
    let body = json!({"model": MODEL, "prompt": case["rendered_prompt"], "temperature": 0, "max_tokens": 64});
    let r = dev.post("/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], case["text"]);
}

#[test]
fn models_stop_strings_and_refusals_in_openai_shape() {
    let dev = Dev::start();
    let models = dev.client("user").get("/v1/models").json();
    assert_eq!(models["data"][0]["id"], MODEL);

    // A stop string ends the answer before it (and is not sent).
    let reference = reference();
    let case = &reference["chat"][0];
    let r = dev.post(
        "/v1/chat/completions",
        &chat_body(&case["messages"], json!({"stop": ["return"]})),
    );
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "```python\ndef square_number(num):\n    "
    );
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");

    // max_tokens reached: finish_reason length, exactly that many tokens.
    let r = dev.post(
        "/v1/chat/completions",
        &chat_body(&case["messages"], json!({"max_tokens": 5})),
    );
    assert_eq!(r.json()["choices"][0]["finish_reason"], "length");
    assert_eq!(r.json()["usage"]["completion_tokens"], 5);

    let messages = json!([{"role": "user", "content": "hi"}]);
    for (body, status, code_or_param) in [
        (
            json!({"model": "gpt-4", "messages": messages}),
            404,
            "model_not_found",
        ),
        (chat_body(&messages, json!({"n": 2})), 400, "n"),
        (
            chat_body(&messages, json!({"temperature": 5})),
            400,
            "temperature",
        ),
        (
            chat_body(&messages, json!({"max_tokens": 100000})),
            400,
            "max_tokens",
        ),
        (
            chat_body(
                &json!([{"role": "user", "content": "word ".repeat(5000)}]),
                json!({}),
            ),
            400,
            "messages",
        ),
    ] {
        let r = dev.post("/v1/chat/completions", &body);
        assert_eq!(r.status, status, "{body}: {}", r.text());
        let err = &r.json()["error"];
        assert!(
            err["code"] == code_or_param || err["param"] == code_or_param,
            "{body}: {err}"
        );
    }
    // A user role is required: the auditor's certificate is refused.
    let r = dev
        .client("auditor")
        .request(
            "POST",
            "/v1/chat/completions",
            Some(chat_body(&messages, json!({})).to_string().as_bytes()),
        )
        .expect("POST");
    assert_eq!(r.status, 403);
}

#[test]
fn every_generation_is_audited_before_and_after() {
    let dev = Dev::start();
    let messages = json!([{"role": "user", "content": "Say hi"}]);
    let r = dev.post(
        "/v1/chat/completions",
        &chat_body(&messages, json!({"max_tokens": 4})),
    );
    assert_eq!(r.status, 200);
    let records = dev
        .client("auditor")
        .get("/v1/audit/records?from=0&limit=1000")
        .text();
    let records: Vec<Value> = records
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    let req = kinds
        .iter()
        .position(|k| *k == "inference.request")
        .expect("request record");
    let resp = kinds
        .iter()
        .position(|k| *k == "inference.response")
        .expect("response record");
    assert!(req < resp, "{kinds:?}");
    let request = &records[req];
    assert_eq!(request["model"]["name"], MODEL);
    assert_eq!(
        request["model"]["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert!(request["prompt_sha256"].is_string(), "{request}");
    let response = &records[resp];
    assert_eq!(response["tokens"]["completion"], 4);
    assert_eq!(response["status"], "length");
    // Digest mode: no content in the log.
    let all = serde_json::to_string(&records).expect("json");
    assert!(
        !all.contains("Say hi"),
        "prompt text leaked into the audit log"
    );
}

/// Continuous batching must not change results: 8 concurrent streamed greedy requests each
/// get exactly the answer they get alone.
#[test]
fn concurrent_streams_match_their_solo_answers() {
    let dev = Dev::start();
    let prompts: Vec<String> = (0..8)
        .map(|i| format!("Count from {i} to {}, separated by commas.", i + 5))
        .collect();
    let body = |p: &str| {
        chat_body(
            &json!([{"role": "user", "content": p}]),
            json!({"max_tokens": 24, "stream": true}),
        )
    };
    let text_of = |r: crate::common::Response| -> String {
        assert_eq!(r.status, 200, "{}", r.text());
        sse_events(&r.text())
            .iter()
            .filter(|e| *e != "[DONE]")
            .filter_map(|e| {
                serde_json::from_str::<Value>(e).ok()?["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    let solo: Vec<String> = prompts
        .iter()
        .map(|p| text_of(dev.post("/v1/chat/completions", &body(p))))
        .collect();
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                let client = dev.client("user");
                let b = body(p).to_string();
                s.spawn(move || {
                    client
                        .request("POST", "/v1/chat/completions", Some(b.as_bytes()))
                        .expect("POST")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| text_of(h.join().expect("thread")))
            .collect()
    });
    for (i, (a, b)) in solo.iter().zip(&together).enumerate() {
        assert!(!a.is_empty(), "prompt {i}: empty answer");
        assert_eq!(a, b, "prompt {i}: batched answer differs from the solo one");
    }
    // The batch really held several sequences at once.
    let metrics = dev.client("operator").get("/metrics").text();
    assert!(
        metrics.contains("airlock_generated_tokens_total"),
        "{metrics}"
    );
}

/// A unique marker in a prompt appears nowhere in the state dir (audit log in digest mode,
/// JSON logs, models) after the request.
#[test]
fn prompt_canary_leaves_no_trace_on_disk() {
    let dev = Dev::start();
    let marker = "CANARY-7f3e9a1c-PATIENT-NAME";
    let r = dev.post(
        "/v1/chat/completions",
        &chat_body(
            &json!([{"role": "user", "content": format!("Repeat this word: {marker}")}]),
            json!({"max_tokens": 24}),
        ),
    );
    assert_eq!(r.status, 200);
    let state = dev._dir.path().join("state");
    let mut stack = vec![state];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_none_or(|e| e != "gguf") {
                files += 1;
                let bytes = std::fs::read(&path).expect("read");
                assert!(
                    !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                    "the prompt's marker is in {}",
                    path.display()
                );
            }
        }
    }
    assert!(files > 5, "walked only {files} files");
}

/// Hot swap without dropping requests: a new signed version is installed and activated
/// through the admin API while a streamed answer is in flight; that answer completes, and
/// new requests are served by the new version.
#[test]
fn activation_during_a_stream_lets_the_stream_finish() {
    use std::io::Read;
    let dev = Dev::start();
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = dev.signed_bundle(work.path(), "1.0.1", 1000);

    // A long streamed answer, read past its first chunk.
    let (mut tls, mut seen) = dev.open_stream(200);
    let mut buf = [0u8; 4096];
    assert!(
        !String::from_utf8_lossy(&seen).contains("[DONE]"),
        "the stream ended before the activation"
    );
    let upload = dev
        .client("admin")
        .request(
            "POST",
            "/v1/admin/bundles?activate=true",
            Some(&std::fs::read(&bundle).expect("bundle")),
        )
        .expect("upload");
    assert_eq!(upload.status, 200, "{}", upload.text());

    // The in-flight answer finishes normally on the old engine.
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("stream broken by the activation: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");

    // New requests get the new version once it is loaded.
    dev.wait_serving("1.0.1");
    let r = dev.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The drop folder: a signed bundle copied into `STATE/import/` is verified, installed,
/// activated and moved to `accepted/`; a copy with one flipped byte goes to `rejected/`
/// with its reason, and the served model does not change.
#[test]
fn bundles_dropped_into_the_import_folder_are_verified_and_activated() {
    let dev = Dev::start();
    let state = dev._dir.path().join("state");
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = dev.signed_bundle(work.path(), "2.0.0", 2000);
    let import = state.join("import");
    let listing = |sub: &str| -> Vec<String> {
        std::fs::read_dir(import.join(sub))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    // A tampered copy first: rejected with a reason, nothing changes.
    let mut bytes = std::fs::read(&bundle).expect("bundle");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(import.join("tampered.airlock"), &bytes).expect("drop tampered");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !listing("rejected")
        .iter()
        .any(|f| f.ends_with("tampered.airlock.reason"))
    {
        assert!(
            Instant::now() < deadline,
            "the tampered bundle was never rejected"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    dev.wait_serving("1.0.0-dev.1");

    // The good one: accepted and served.
    std::fs::copy(&bundle, import.join("v2.airlock")).expect("drop bundle");
    dev.wait_serving("2.0.0");
    assert!(
        listing("accepted")
            .iter()
            .any(|f| f.ends_with("v2.airlock"))
    );
    assert!(!import.join("v2.airlock").exists());
    let r = dev.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // Both are in the audit log.
    let records = dev
        .client("auditor")
        .get("/v1/audit/records?from=0&limit=1000")
        .text();
    assert!(records.contains("bundle.reject"), "{records}");
    assert!(records.contains("model.activate"), "{records}");
}
