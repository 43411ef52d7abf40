//! The official `openai` Python client against the real service, checked the way an auditor
//! would: the service is stopped, its log exported and verified offline with
//! `airlock audit`, and every request found with its caller, model and digests.
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::api::{Dev, MODEL, reference};
use crate::common::{airlock, fingerprint, sha256_hex};

/// SHA-256 of the default model's GGUF file (ARCHITECTURE.md §9).
const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The version `airlock dev` gives the default model's bundle.
const DEV_VERSION: &str = "1.0.0-dev.1";

/// `.venv-test/bin/python`, which `./install.sh --test` creates with the `openai` package.
fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-test/bin/python");
    assert!(
        python.is_file(),
        "{} not found: run ./install.sh --test (it creates .venv-test with the openai package)",
        python.display()
    );
    python
}

/// Runs `script` with the test venv's Python; returns its stdout.
pub(crate) fn run_python(script: &str) -> String {
    let output = std::process::Command::new(python())
        .args(["-c", script])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "python failed: {}\n--- script ---\n{script}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 stdout")
}

/// As an auditor, with the service stopped: `airlock audit pubkey`, `export`, then
/// `verify --export` of the export with that key (must pass). Returns the records.
pub(crate) fn export_and_verify(state: &Path) -> Vec<Value> {
    crate::common::export_and_verify_state(state)
}

/// The records of `kind` with `request_id`.
fn by_request<'a>(records: &'a [Value], kind: &str, request_id: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["kind"] == kind && r["request_id"] == request_id)
        .collect()
}

/// Who the dev user certificate is, as the service names it (subject) and as the policy
/// maps it (roles); the fingerprint is computed here from the certificate file.
struct Caller {
    fingerprint: String,
    subject: String,
}

fn assert_inference_pair(
    records: &[Value],
    request_id: &str,
    caller: &Caller,
    prompt: &str,
    output: &str,
    tokens: (u64, u64),
    status: &str,
) {
    let requests = by_request(records, "inference.request", request_id);
    let responses = by_request(records, "inference.response", request_id);
    assert_eq!(requests.len(), 1, "request {request_id}: {requests:?}");
    assert_eq!(responses.len(), 1, "response {request_id}: {responses:?}");
    let (request, response) = (requests[0], responses[0]);
    assert!(
        request["seq"].as_u64() < response["seq"].as_u64(),
        "{request} {response}"
    );
    for r in [request, response] {
        assert_eq!(
            r["actor"]["fingerprint"],
            caller.fingerprint.as_str(),
            "{r}"
        );
        assert_eq!(r["actor"]["subject"], caller.subject.as_str(), "{r}");
        assert_eq!(r["actor"]["roles"], json!(["user"]), "{r}");
        assert_eq!(
            r["model"],
            json!({"name": MODEL, "version": DEV_VERSION, "sha256": MODEL_SHA256}),
            "{r}"
        );
        assert!(
            r["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{r}"
        );
    }
    assert_eq!(
        request["prompt_sha256"],
        sha256_hex(prompt.as_bytes()),
        "prompt digest of {request_id}"
    );
    assert_eq!(
        response["output_sha256"],
        sha256_hex(output.as_bytes()),
        "output digest of {request_id}: {output:?}"
    );
    assert_eq!(
        response["tokens"],
        json!({"prompt": tokens.0, "completion": tokens.1}),
        "{response}"
    );
    assert_eq!(response["status"], status, "{response}");
}

/// The official `openai` Python package (from `.venv-test`) talks to the service over mTLS
/// exactly as `airlock dev` tells users to; afterwards the exported, verified audit log
/// holds each generation's request and response records under the client certificate's
/// identity, with the model and the digests of exactly what was sent and received, and
/// nothing for the models list or the refused request.
#[test]
fn the_official_openai_python_client_works_over_mtls_and_every_answer_is_audited() {
    let mut dev = Dev::start();
    let pki = dev.fixture.pki("ca.crt");
    let pki = pki.parent().expect("pki dir").display().to_string();
    let reference = reference();
    let chat_case = &reference["chat"][0];
    let completion_case = &reference["chat"][2];
    let script = format!(
        r#"
import json, ssl, openai
tls = ssl.create_default_context(cafile="{pki}/ca.crt"); tls.load_cert_chain("{pki}/user.crt", "{pki}/user.key")
client = openai.OpenAI(base_url="https://localhost:{port}/v1", api_key="unused", http_client=openai.DefaultHttpxClient(verify=tls))
messages = json.loads({messages})
out = {{}}
raw = client.models.with_raw_response.list()
out["models"] = {{"id": raw.headers["x-request-id"], "ids": [m.id for m in raw.parse()]}}
raw = client.chat.completions.with_raw_response.create(model="{MODEL}", messages=messages, temperature=0, max_tokens=128)
r = raw.parse()
out["chat"] = {{"id": raw.headers["x-request-id"], "text": r.choices[0].message.content, "usage": [r.usage.prompt_tokens, r.usage.completion_tokens], "finish": r.choices[0].finish_reason}}
raw = client.chat.completions.with_raw_response.create(model="{MODEL}", messages=messages, temperature=0, max_tokens=128, stream=True, stream_options={{"include_usage": True}})
parts, usage, finish = [], None, None
for c in raw.parse():
    if c.choices and c.choices[0].delta.content: parts.append(c.choices[0].delta.content)
    if c.choices and c.choices[0].finish_reason: finish = c.choices[0].finish_reason
    if c.usage: usage = [c.usage.prompt_tokens, c.usage.completion_tokens]
out["stream"] = {{"id": raw.headers["x-request-id"], "text": "".join(parts), "usage": usage, "finish": finish}}
raw = client.completions.with_raw_response.create(model="{MODEL}", prompt={prompt}, temperature=0, max_tokens=64)
r = raw.parse()
out["completion"] = {{"id": raw.headers["x-request-id"], "text": r.choices[0].text, "usage": [r.usage.prompt_tokens, r.usage.completion_tokens], "finish": r.choices[0].finish_reason}}
try:
    client.chat.completions.create(model="nope", messages=[{{"role": "user", "content": "x"}}])
except openai.NotFoundError as e:
    out["not_found"] = {{"id": e.response.headers["x-request-id"], "code": e.body["code"], "status": e.status_code}}
print(json.dumps(out))
"#,
        port = dev.fixture.port,
        // JSON string literals are Python string literals.
        messages = Value::String(chat_case["messages"].to_string()),
        prompt = completion_case["rendered_prompt"],
    );
    let out: Value = serde_json::from_str(&run_python(&script)).expect("script output");

    // What the client saw.
    assert_eq!(out["models"]["ids"], json!([MODEL]));
    let chat = &out["chat"];
    assert_eq!(chat["text"], chat_case["text"], "greedy chat answer");
    assert_eq!(chat["finish"], "stop");
    let stream = &out["stream"];
    assert_eq!(
        stream["text"], chat["text"],
        "streamed and plain greedy answers differ"
    );
    assert_eq!(stream["usage"], chat["usage"]);
    assert_eq!(stream["finish"], "stop");
    let completion = &out["completion"];
    assert_eq!(completion["text"], completion_case["text"]);
    assert_eq!(out["not_found"]["code"], "model_not_found");
    assert_eq!(out["not_found"]["status"], 404);
    let ids: Vec<&str> = ["models", "chat", "stream", "completion", "not_found"]
        .iter()
        .map(|k| {
            out[k]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{k}: no id"))
        })
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "request ids repeat: {ids:?}");

    // Who the caller is: the certificate's fingerprint, and its subject as the service
    // reports it to that caller.
    let healthz = dev.client("user").get("/healthz").json();
    let caller = Caller {
        fingerprint: fingerprint(&dev.fixture.pki("user.crt")),
        subject: healthz["identity"]["subject"]
            .as_str()
            .expect("subject")
            .to_owned(),
    };
    assert_eq!(
        healthz["identity"]["fingerprint"],
        caller.fingerprint.as_str()
    );
    assert!(caller.subject.contains("CN=user"), "{}", caller.subject);

    // The auditor's view: service stopped, log exported and verified offline.
    dev.stop();
    let records = export_and_verify(&dev.state());
    let usage = |v: &Value| {
        (
            v["usage"][0].as_u64().expect("prompt tokens"),
            v["usage"][1].as_u64().expect("completion tokens"),
        )
    };
    // Chat: the prompt digest is of the prompt as the model saw it (the chat template's
    // rendering, which llama.cpp's reference also records), the output of the answer.
    let rendered = chat_case["rendered_prompt"].as_str().expect("rendered");
    for (case, stream) in [(chat, "false"), (stream, "true")] {
        let id = case["id"].as_str().expect("id");
        assert_inference_pair(
            &records,
            id,
            &caller,
            rendered,
            case["text"].as_str().expect("text"),
            usage(case),
            "stop",
        );
        let request = by_request(&records, "inference.request", id)[0];
        assert_eq!(request["params"]["stream"], stream, "{request}");
        assert_eq!(request["params"]["endpoint"], "chat.completions");
        assert_eq!(request["params"]["max_tokens"], "128");
    }
    // Completions: the raw prompt as sent.
    let id = completion["id"].as_str().expect("id");
    assert_inference_pair(
        &records,
        id,
        &caller,
        completion_case["rendered_prompt"].as_str().expect("prompt"),
        completion["text"].as_str().expect("text"),
        usage(completion),
        completion["finish"].as_str().expect("finish"),
    );
    assert_eq!(
        by_request(&records, "inference.request", id)[0]["params"]["endpoint"],
        "completions"
    );
    // The models list and the refused request generated nothing: no inference records.
    for key in ["models", "not_found"] {
        let id = out[key]["id"].as_str().expect("id");
        assert!(
            !records.iter().any(|r| r["request_id"] == id
                && r["kind"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("inference."))),
            "{key} has inference records"
        );
    }
    assert_eq!(
        records
            .iter()
            .filter(|r| r["kind"] == "inference.request")
            .count(),
        3,
        "one inference.request per generation"
    );
    assert_eq!(
        records.last().map(|r| r["kind"].clone()),
        Some(json!("audit.checkpoint")),
        "the log ends with the shutdown checkpoint"
    );
}

/// The Python example `airlock dev` prints, cut from its output: the lines after
/// "From Python" up to "Stop with", without their two-space indent.
pub(crate) fn printed_python_example(printed: &str) -> String {
    let mut lines = printed
        .lines()
        .skip_while(|l| !l.starts_with("From Python"));
    assert!(lines.next().is_some(), "no Python example in: {printed}");
    let snippet: Vec<&str> = lines
        .take_while(|l| !l.starts_with("Stop with"))
        .map(|l| {
            l.strip_prefix("  ")
                .unwrap_or_else(|| panic!("not indented: {l:?}"))
        })
        .collect();
    assert!(snippet.len() >= 4, "{printed}");
    snippet.join("\n") + "\n"
}

/// The ```python block of README.md's "OpenAI-compatible API" section.
fn readme_python_example() -> String {
    readme_python_block("## The OpenAI-compatible API")
}

/// The first ```python block of README.md after the line `heading`.
pub(crate) fn readme_python_block(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let section = &readme[readme
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"))..];
    let start = section.find("```python\n").expect("python block") + "```python\n".len();
    let end = start + section[start..].find("```").expect("block end");
    section[start..end].to_owned()
}

/// The acceptance flow: the Python example exactly as `airlock dev` prints it (the same as
/// the README's, but for the paths and port) streams an answer with the official `openai`
/// package over mTLS with the dev user's certificate; then, as an auditor, `airlock audit
/// export` + `verify` pass and the export holds that request and its answer (by digest)
/// under the developer's certificate identity; `airlock audit show` prints the same record.
#[test]
fn the_printed_python_example_streams_and_is_found_in_the_verified_log() {
    let mut dev = Dev::start();
    let snippet = printed_python_example(&dev.printed());
    let pki = dev.state().join("pki").canonicalize().expect("pki dir");
    let url = format!("https://localhost:{}", dev.fixture.port);
    assert_eq!(
        readme_python_example()
            .replace("airlock-dev/pki", &pki.display().to_string())
            .replace("https://localhost:8443", &url),
        snippet,
        "README.md's Python example differs from the one `airlock dev` prints"
    );
    assert!(snippet.contains("stream=True"), "{snippet}");

    let printed = run_python(&snippet);
    let answer = printed.strip_suffix('\n').expect("final newline");
    assert!(!answer.trim().is_empty(), "empty answer");

    dev.stop();
    let records = export_and_verify(&dev.state());
    let responses: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "inference.response")
        .collect();
    assert_eq!(responses.len(), 1, "{responses:?}");
    let response = responses[0];
    assert_eq!(
        response["output_sha256"],
        sha256_hex(answer.as_bytes()),
        "the logged answer is not the one printed: {answer:?}"
    );
    // Sampled (the example leaves temperature at 1): it may also run to the length limit.
    assert!(
        response["status"] == "stop" || response["status"] == "length",
        "{response}"
    );
    let request_id = response["request_id"].as_str().expect("request id");
    let requests = by_request(&records, "inference.request", request_id);
    assert_eq!(requests.len(), 1, "{records:?}");
    let request = requests[0];
    // The chat template's rendering of [{"role": "user", "content": "Hello"}]: the
    // reference's rendering of another user-only message, with "Hello" in it instead.
    let case = &reference()["chat"][0];
    let rendered = case["rendered_prompt"].as_str().expect("rendered").replace(
        case["messages"][0]["content"].as_str().expect("content"),
        "Hello",
    );
    assert_eq!(request["prompt_sha256"], sha256_hex(rendered.as_bytes()));
    assert_eq!(request["params"]["stream"], "true", "{request}");
    let fingerprint = fingerprint(&pki.join("user.crt"));
    for r in [request, response] {
        assert_eq!(r["actor"]["fingerprint"], fingerprint.as_str(), "{r}");
        assert!(
            r["actor"]["subject"]
                .as_str()
                .is_some_and(|s| s.contains("CN=user")),
            "{r}"
        );
        assert_eq!(r["actor"]["roles"], json!(["user"]), "{r}");
        assert_eq!(r["model"]["name"], MODEL);
        assert_eq!(r["model"]["sha256"], MODEL_SHA256);
    }

    // `airlock audit show` prints the same record from the store (digest mode: no content).
    let seq = response["seq"].as_u64().expect("seq").to_string();
    let state = dev.state();
    let out = airlock(&[
        "audit",
        "show",
        "--state",
        state.to_str().expect("utf-8"),
        &seq,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).expect("show JSON");
    assert_eq!(&shown["record"], response);
    assert!(shown["content"].is_null(), "{shown}");
}
