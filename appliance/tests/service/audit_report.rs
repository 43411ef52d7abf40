//! `airlock audit report` and `airlock audit subject` as an auditor and a privacy officer use
//! them: a scripted run of the real service (`airlock dev`, the default model, real mTLS with
//! several certificates), stopped, exported and reported; every number checked against a
//! count made here from the export; the HTML opened in a real headless Chromium.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::api::{Dev, chat_body};
use crate::api_audited::export_and_verify;
use crate::common::{Fixture, airlock, fingerprint};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `airlock audit report --export EXPORT --key KEY --out OUT [extra]`.
fn report(export: &Path, key: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "audit",
        "report",
        "--export",
        s(export),
        "--key",
        s(key),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    airlock(&args)
}

/// The export and key files [`export_and_verify`] writes beside `state`.
fn export_files(state: &Path) -> (PathBuf, PathBuf) {
    (
        state.with_file_name("audit.jsonl"),
        state.with_file_name("audit.pub"),
    )
}

fn chat(dev: &Dev, role: &str, subject: Option<&str>, content: &str) -> u16 {
    let body = chat_body(
        &json!([{"role": "user", "content": content}]),
        json!({"max_tokens": 4}),
    );
    let headers: Vec<(&str, &str)> = subject
        .map(|s| ("Airlock-Subject", s))
        .into_iter()
        .collect();
    dev.client(role)
        .request_with_headers(
            "POST",
            "/v1/chat/completions",
            &headers,
            body.to_string().as_bytes(),
        )
        .expect("POST")
        .status
}

/// Counts of the export's records, computed here without the report's code.
#[derive(Debug, Default)]
struct Counted {
    requests_by_fingerprint: BTreeMap<String, u64>,
    denied_by_fingerprint: BTreeMap<String, u64>,
    tokens_in: u64,
    tokens_out: u64,
    erasures: u64,
    model_events: u64,
    starts: u64,
    policy_loads: u64,
}

fn count(records: &[Value]) -> Counted {
    let mut c = Counted::default();
    for r in records {
        let fp = r["actor"]["fingerprint"].as_str().unwrap_or("").to_owned();
        match r["kind"].as_str().expect("kind") {
            "inference.request" => *c.requests_by_fingerprint.entry(fp).or_default() += 1,
            "access.denied" => *c.denied_by_fingerprint.entry(fp).or_default() += 1,
            "inference.response" => {
                c.tokens_in += r["tokens"]["prompt"].as_u64().unwrap_or(0);
                c.tokens_out += r["tokens"]["completion"].as_u64().unwrap_or(0);
            }
            "audit.erase" if r["params"]["reason"] != "retention" => c.erasures += 1,
            "bundle.verify" | "bundle.install" | "bundle.reject" | "model.activate"
            | "model.rollback" => c.model_events += 1,
            "service.start" => c.starts += 1,
            "policy.load" => c.policy_loads += 1,
            _ => {}
        }
    }
    c
}

#[test]
fn report_counts_equal_an_independent_count_of_the_export() {
    let mut dev = Dev::start();
    // Three users' worth of traffic from the dev certificates: the user asks (once on behalf
    // of a data subject), the operator and the auditor are refused the chat route, the
    // privacy officer erases the subject.
    for (i, subject) in [None, Some("case-7"), None].into_iter().enumerate() {
        assert_eq!(chat(&dev, "user", subject, &format!("Say {i}.")), 200);
    }
    assert_eq!(chat(&dev, "operator", None, "Hello"), 403);
    assert_eq!(chat(&dev, "auditor", None, "Hello"), 403);
    assert_eq!(dev.client("auditor").get("/metrics").status, 403);
    let r = dev
        .client("privacy")
        .request("POST", "/v1/audit/erase", Some(br#"{"subject":"case-7"}"#))
        .expect("erase");
    assert_eq!(r.status, 200, "{}", r.text());

    // The auditor's endpoint reports on the running service's log, verified first.
    let live = dev.client("auditor").get("/v1/audit/report");
    assert_eq!(live.status, 200, "{}", live.text());
    let live = live.json();
    assert_eq!(live["format"], "airlock-audit-report-v1");
    assert_eq!(live["requests"]["total"], 3);
    assert_eq!(dev.client("user").get("/v1/audit/report").status, 403);
    let html = dev.client("auditor").get("/v1/audit/report?format=html");
    assert_eq!(html.status, 200);
    assert!(
        html.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    );
    assert!(html.text().contains("Verified before reporting"));
    let pdf = dev
        .client("auditor")
        .get("/v1/audit/report?format=pdf&from=2000-01-01");
    assert_eq!(pdf.status, 200);
    assert_eq!(pdf.header("content-type"), Some("application/pdf"));
    assert!(pdf.body.starts_with(b"%PDF-"));
    let bad_format = dev.client("auditor").get("/v1/audit/report?format=docx");
    assert_eq!(bad_format.status, 400);
    assert_eq!(bad_format.json()["error"]["param"], "format");
    let bad = dev
        .client("auditor")
        .get("/v1/audit/report?from=2026-13-01");
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["error"]["param"], "from");

    // The auditor keeps a signed checkpoint; the report proves the log extends it.
    let kept = dev.client("auditor").get("/v1/audit/checkpoint");
    assert_eq!(kept.status, 200, "{}", kept.text());
    let kept_size: u64 = kept
        .text()
        .lines()
        .nth(1)
        .expect("size line")
        .parse()
        .expect("size");

    dev.stop();
    let state = dev.state();
    let records = export_and_verify(&state);
    let (export, key) = export_files(&state);
    let counted = count(&records);
    let kept_file = state.with_file_name("kept.checkpoint");
    std::fs::write(&kept_file, kept.text()).expect("write checkpoint");

    let json_out = state.with_file_name("report.json");
    let out = report(
        &export,
        &key,
        &json_out,
        &["--since-checkpoint", s(&kept_file)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.starts_with("OK: "), "{printed}");
    let rep: Value =
        serde_json::from_slice(&std::fs::read(&json_out).expect("report.json")).expect("JSON");

    // Verification: every record, the head hash of the export's last record.
    let v = &rep["verification"];
    assert_eq!(v["records"], records.len() as u64);
    assert_eq!(v["head"], records.last().expect("records")["hash"]);
    assert!(v["line"].as_str().expect("line").starts_with("OK: "));
    assert_eq!(v["key"]["key_id"].as_str().expect("key id").len(), 8);
    assert_eq!(v["since_checkpoint"], kept_size);
    assert!(kept_size > 0 && kept_size < records.len() as u64);

    // Requests per identity and denials per identity, as counted here.
    let q = &rep["requests"];
    let total: u64 = counted.requests_by_fingerprint.values().sum();
    assert_eq!(total, 3);
    assert_eq!(q["total"], total);
    let denied: u64 = counted.denied_by_fingerprint.values().sum();
    assert!(denied >= 3, "{counted:?}");
    assert_eq!(q["denied"], denied);
    assert_eq!(q["tokens_in"], counted.tokens_in);
    assert_eq!(q["tokens_out"], counted.tokens_out);
    assert!(counted.tokens_out > 0);
    let rows = q["per_identity"].as_array().expect("per_identity");
    let fp = |role: &str| fingerprint(&dev.fixture.pki(&format!("{role}.crt")));
    let mut seen = BTreeMap::new();
    for row in rows {
        let fp = row["fingerprint"].as_str().expect("fingerprint").to_owned();
        assert_eq!(
            row["requests"],
            counted
                .requests_by_fingerprint
                .get(&fp)
                .copied()
                .unwrap_or(0),
            "{row}"
        );
        assert_eq!(
            row["denied"],
            counted.denied_by_fingerprint.get(&fp).copied().unwrap_or(0),
            "{row}"
        );
        seen.insert(fp, row.clone());
    }
    assert_eq!(seen[&fp("user")]["requests"], 3, "{seen:?}");
    assert_eq!(
        seen[&fp("user")]["subject"],
        "CN=user, O=Airlock development"
    );
    assert_eq!(seen[&fp("operator")]["denied"], 1, "{seen:?}");
    assert_eq!(seen[&fp("auditor")]["denied"], 2, "{seen:?}");
    let per_day: u64 = q["per_day"]
        .as_array()
        .expect("per_day")
        .iter()
        .map(|d| d["requests"].as_u64().expect("n"))
        .sum();
    assert_eq!(per_day, total);
    let model_rows = q["per_model"].as_array().expect("per_model");
    assert_eq!(model_rows.len(), 1);
    assert_eq!(model_rows[0]["version"], "1.0.0-dev.1");
    assert_eq!(model_rows[0]["requests"], 3);

    // Erasures (the subject shown only as its digest), model events, configuration.
    assert_eq!(
        rep["erasures"].as_array().expect("erasures").len() as u64,
        counted.erasures
    );
    assert_eq!(counted.erasures, 1);
    let erasure = &rep["erasures"][0];
    assert_eq!(
        erasure["subject_sha256"],
        crate::common::sha256_hex(b"case-7")
    );
    assert_eq!(erasure["by"], "CN=privacy, O=Airlock development");
    assert_eq!(
        rep["model_events"].as_array().expect("models").len() as u64,
        counted.model_events
    );
    assert!(
        rep["model_events"]
            .as_array()
            .expect("models")
            .iter()
            .any(|m| m["kind"] == "model.activate"),
        "{}",
        rep["model_events"]
    );
    assert_eq!(
        rep["policy_loads"].as_array().expect("loads").len() as u64,
        counted.policy_loads
    );
    let starts: Vec<&Value> = rep["service"]
        .as_array()
        .expect("service")
        .iter()
        .filter(|e| e["event"] == "start")
        .collect();
    assert_eq!(starts.len() as u64, counted.starts);
    let refusals = rep["refusals"].as_array().expect("refusals");
    let refused: u64 = refusals
        .iter()
        .map(|r| r["count"].as_u64().expect("n"))
        .sum();
    assert_eq!(refused, denied, "{refusals:?}");

    // The same numbers in the HTML, and a period before the run counts nothing.
    let html_out = state.with_file_name("report.html");
    let out = report(&export, &key, &html_out, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(&html_out).expect("html");
    assert!(
        html.contains(v["line"].as_str().expect("line")),
        "verification line"
    );
    assert!(html.contains("CN=operator, O=Airlock development"));
    assert!(
        html.contains("CN=privacy, O=Airlock development"),
        "the erasure's officer"
    );
    let old = state.with_file_name("old.json");
    let out = report(&export, &key, &old, &["--to", "2000-01-01"]);
    assert!(out.status.success(), "{}", text(&out));
    let old: Value = serde_json::from_slice(&std::fs::read(&old).expect("old")).expect("JSON");
    assert_eq!(old["requests"]["total"], 0);
    assert_eq!(old["verification"]["records"], records.len() as u64);

    // An existing file is never overwritten; an unknown extension is refused up front.
    let out = report(&export, &key, &json_out, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("exists"), "{}", text(&out));
    let out = report(&export, &key, &state.with_file_name("report.txt"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(".html, .pdf or .json"),
        "{}",
        text(&out)
    );

    // The PDF: a real PDF whose text holds the verification line.
    let pdf_out = state.with_file_name("report.pdf");
    let out = report(&export, &key, &pdf_out, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let pdf = std::fs::read(&pdf_out).expect("pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    let head = v["head"].as_str().expect("head");
    assert!(
        pdf.windows(head.len()).any(|w| w == head.as_bytes()),
        "the PDF names the head hash"
    );
}

#[test]
fn tampered_export_yields_no_report() {
    let fx = Fixture::new();
    let server = fx.serve();
    let stranger = fx.client(Some("user"));
    assert_eq!(stranger.get("/metrics").status, 403);
    let mut server = server;
    server.terminate();
    let (status, err) = server.wait(std::time::Duration::from_secs(30));
    assert!(status.success(), "{err}");
    let state = fx.dir.path().join("state");
    let records = export_and_verify(&state);
    let (export, key) = export_files(&state);
    let denied = records
        .iter()
        .find(|r| r["kind"] == "access.denied")
        .expect("the denial is recorded");
    let seq = denied["seq"].as_u64().expect("seq");

    // One edited field: the record no longer matches its hash.
    let text_in = std::fs::read_to_string(&export).expect("export");
    let tampered = text_in.replacen("\"status\":\"403\"", "\"status\":\"200\"", 1);
    assert_ne!(tampered, text_in);
    let bad = fx.dir.path().join("tampered.jsonl");
    std::fs::write(&bad, tampered).expect("write");
    for name in ["r.html", "r.json", "r.pdf"] {
        let out_file = fx.dir.path().join(name);
        let out = report(&bad, &key, &out_file, &[]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(
            said.contains(&format!("FAIL: seq {seq}")) && said.contains("edited"),
            "{said}"
        );
        assert!(said.contains("no report was written"), "{said}");
        assert!(!said.contains("panicked"), "{said}");
        assert!(!out_file.exists(), "{name} written for a log that fails");
    }
    // A record cut out of the middle: named as missing.
    let lines: Vec<&str> = text_in.lines().collect();
    let cut: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&bad, cut).expect("write");
    let out = report(&bad, &key, &fx.dir.path().join("cut.html"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("FAIL: seq 1") && text(&out).contains("missing"),
        "{}",
        text(&out)
    );
    // The untouched export reports fine with the same key.
    let out = report(&export, &key, &fx.dir.path().join("good.html"), &[]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let fx = Fixture::new();
    let mut server = fx.serve();
    assert_eq!(fx.client(Some("user")).get("/metrics").status, 403);
    assert_eq!(fx.client(Some("operator")).get("/metrics").status, 200);
    server.terminate();
    let (status, err) = server.wait(std::time::Duration::from_secs(30));
    assert!(status.success(), "{err}");
    let state = fx.dir.path().join("state");
    let records = export_and_verify(&state);
    let head = records.last().expect("records")["hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    let (export, key) = export_files(&state);
    let html_path = fx.dir.path().join("report.html");
    let out = report(&export, &key, &html_path, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(&html_path).expect("html");

    // Self-contained: no script, no external reference (the SVG namespace is a name, not a
    // fetch).
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "a script in the report");
    let without_ns = lower.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for pattern in [
        "http://", "https://", "src=", "href=", "url(", "@import", "//cdn",
    ] {
        assert!(
            !without_ns.contains(pattern),
            "external reference {pattern:?}"
        );
    }

    // A real browser, in a network namespace with no interface: it renders the page with
    // nothing but the file.
    let chromium = which("chromium");
    let profile = tempfile::tempdir().expect("profile dir");
    let shot = fx.dir.path().join("report.png");
    let url = format!("file://{}", s(&html_path));
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
    ];
    let browse = |extra: &[&str]| {
        Command::new("unshare")
            .arg("--net")
            .arg(&chromium)
            .args(base)
            .arg(format!("--user-data-dir={}", s(profile.path())))
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium")
    };
    let shot_arg = format!("--screenshot={}", s(&shot));
    let out = browse(&[&shot_arg, "--window-size=1200,1600"]);
    assert!(out.status.success(), "chromium: {}", text(&out));
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_not_blank(&png);

    let dom = browse(&["--dump-dom"]);
    assert!(dom.status.success(), "chromium: {}", text(&dom));
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("Verified before reporting"), "{dom}");
    // The verification line itself, as `airlock audit verify` prints it.
    let line = format!("OK: {} records, head {head}", records.len());
    assert!(dom.contains(&line), "{line} not in the page: {dom}");
    assert!(dom.contains("id=\"identities\""), "{dom}");
    assert!(
        dom.contains("<td>CN=user, O=Airlock development</td>"),
        "{dom}"
    );
    assert!(
        dom.contains("id=\"denials\"") && dom.contains("/metrics"),
        "{dom}"
    );
    assert!(dom.contains("<svg"), "the chart is in the page");
}

/// The screenshot is a real picture: a valid PNG whose pixels are not all one colour.
fn assert_not_blank(png: &[u8]) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let pixels = &buf[..info.buffer_size()];
    let px = info.color_type.samples();
    let first = &pixels[..px];
    let differing = pixels.chunks(px).filter(|p| *p != first).count();
    assert!(
        differing > pixels.len() / px / 100,
        "the screenshot is blank ({differing} pixels differ)"
    );
}

fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} not found: ./install.sh --test installs it"))
}

/// `airlock audit subject --subject ID --state STATE`.
fn subject_of(state: &Path, id: &str) -> Output {
    airlock(&["audit", "subject", "--subject", id, "--state", s(state)])
}

#[test]
fn subject_access_lists_the_subjects_records() {
    let mut dev = Dev::start();
    dev.restart_with("[audit]\ncontent = \"sealed\"\n");
    assert_eq!(
        chat(&dev, "user", Some("case-9"), "Patient nine's question."),
        200
    );
    assert_eq!(
        chat(&dev, "user", Some("case-8"), "Patient xyzzy-eight asks."),
        200
    );
    assert_eq!(chat(&dev, "user", Some("case-9"), "Nine again."), 200);
    dev.stop();
    let state = dev.state();

    let out = subject_of(&state, "case-9");
    assert!(out.status.success(), "{}", text(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(listed["subject"], "case-9");
    let entries = listed["entries"].as_array().expect("entries");
    // Two requests and their two responses, nothing of case-8.
    assert_eq!(listed["records"], 4, "{listed}");
    assert_eq!(entries.len(), 4);
    let prompts: Vec<&str> = entries
        .iter()
        .filter(|e| e["record"]["kind"] == "inference.request")
        .map(|e| {
            e["content"]["prompt"]
                .as_str()
                .expect("sealed prompt shown")
        })
        .collect();
    assert_eq!(prompts.len(), 2);
    assert!(
        prompts[0].contains("Patient nine's question."),
        "{prompts:?}"
    );
    assert!(prompts[1].contains("Nine again."), "{prompts:?}");
    assert!(
        !out.stdout.windows(5).any(|w| w == b"xyzzy"),
        "another subject's content"
    );
    for e in entries {
        assert_eq!(e["record"]["subject"], "case-9");
        if e["record"]["kind"] == "inference.response" {
            assert!(e["content"]["output"].is_string(), "{e}");
        }
    }

    // The restart above killed the first run: the report shows the gap as unclean (no
    // service.stop), and the second run's clean stop.
    export_and_verify(&state);
    let (export, key) = export_files(&state);
    let out_file = state.with_file_name("r.json");
    let out = report(&export, &key, &out_file, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let rep: Value = serde_json::from_slice(&std::fs::read(&out_file).expect("r")).expect("JSON");
    let gaps = rep["gaps"].as_array().expect("gaps");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0]["clean"], false, "{gaps:?}");
    let events: Vec<&str> = rep["service"]
        .as_array()
        .expect("service")
        .iter()
        .map(|e| e["event"].as_str().expect("event"))
        .collect();
    assert_eq!(events, ["start", "start", "stop"]);

    // After erasure the records are still listed, their content reads "erased".
    let out = airlock(&[
        "audit",
        "erase",
        "--subject",
        "case-9",
        "--state",
        s(&state),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = subject_of(&state, "case-9");
    assert!(out.status.success(), "{}", text(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let entries = listed["entries"].as_array().expect("entries");
    assert_eq!(
        entries.len(),
        5,
        "the erase record is the subject's too: {listed}"
    );
    assert!(
        entries
            .iter()
            .filter(|e| e["record"]["kind"] != "audit.erase")
            .all(|e| e["content"] == "erased"),
        "{listed}"
    );
    // An unknown subject has no records; a missing state directory is one line, exit 1.
    let out = subject_of(&state, "nobody");
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(listed["records"], 0);
    let out = subject_of(Path::new("/nonexistent"), "x");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
}

#[test]
fn service_start_records_the_lockdown_layers() {
    let fx = Fixture::new();
    let mut server = fx.serve();
    assert_eq!(fx.client(Some("user")).get("/healthz").status, 200);
    server.terminate();
    let (status, err) = server.wait(std::time::Duration::from_secs(30));
    assert!(status.success(), "{err}");
    let state = fx.dir.path().join("state");
    let records = export_and_verify(&state);
    let start = records
        .iter()
        .find(|r| r["kind"] == "service.start")
        .expect("service.start");
    assert_eq!(start["status"], "ok");
    let layers = start["params"]["lockdown"]
        .as_str()
        .expect("lockdown param");
    // The fixture's policy keeps the default lockdown: enforce, Landlock and seccomp.
    assert!(layers.starts_with("lockdown=enforce"), "{layers}");
    assert!(
        layers.contains("seccomp=") && layers.contains("landlock="),
        "{layers}"
    );
    assert!(layers.contains("socket_activation=no"), "{layers}");
    // policy.load follows it, and the report shows the layers at that start.
    let next = &records[start["seq"].as_u64().expect("seq") as usize + 1];
    assert_eq!(next["kind"], "policy.load");
    let (export, key) = export_files(&state);
    let out_file = fx.dir.path().join("r.json");
    let out = report(&export, &key, &out_file, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let rep: Value = serde_json::from_slice(&std::fs::read(&out_file).expect("r")).expect("JSON");
    assert_eq!(rep["service"][0]["event"], "start");
    assert_eq!(rep["service"][0]["lockdown"], layers);
    assert_eq!(rep["service"][1]["event"], "stop");
}
