//! The offline install kit as a site uses it: `./install.sh --kit` on the build station,
//! `install.sh --from-kit` on a host with no network (a network namespace with no
//! interface, a PATH without cargo, pip or apt), then the installed binary serving a chat
//! answer over mTLS with the model the kit brought; and every tampered kit refused with
//! nothing written.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Fixture, command, free_port};
use crate::support::{both, container_users, install_sh, production_modes, require_tool};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `airlock keys generate` into `dir`; returns (key, pub).
fn keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = command()
        .args(["keys", "generate", "--out", s(dir), "--name", name])
        .output()
        .expect("keys generate");
    assert!(out.status.success(), "{}", both(&out));
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    )
}

/// `./install.sh --kit --sign KEY --out DIR --no-source` (the sources' vendoring is the
/// separate scripts/kit-rebuild-check.sh): the test binary stands in for the release build.
fn build_kit(out: &Path, key: &Path) {
    build_kit_of(out, key, Path::new(crate::common::BIN));
}

/// [`build_kit`] shipping `binary`.
fn build_kit_of(out: &Path, key: &Path, binary: &Path) {
    let run = install_sh()
        .env("AIRLOCK_BIN", binary)
        .args(["--kit", "--sign", s(key), "--out", s(out), "--no-source"])
        .output()
        .expect("install.sh --kit");
    assert!(run.status.success(), "{}", both(&run));
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), s(out));
}

/// A directory of links to exactly the tools `--from-kit` may use: no cargo, pip, apt,
/// curl or python.
fn offline_tools(dir: &Path) -> PathBuf {
    let bin = dir.join("tools");
    std::fs::create_dir_all(&bin).expect("tools dir");
    for tool in [
        "bash",
        "env",
        "cat",
        "cp",
        "mv",
        "rm",
        "mkdir",
        "chmod",
        "install",
        "mktemp",
        "stat",
        "tr",
        "base64",
        "sed",
        "head",
        "find",
        "sha256sum",
        "cut",
        "dirname",
        "basename",
        "id",
        "openssl",
        "ln",
        "readlink",
        "awk",
        "date",
    ] {
        let path = which(tool);
        std::os::unix::fs::symlink(&path, bin.join(tool)).expect("link tool");
    }
    bin
}

fn which(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} not found"))
}

/// `sudo ./install.sh --from-kit KIT --trust-key PUB` as run on the air-gapped host: the
/// kit's own install.sh, in a new network namespace (no interface at all), with only
/// `tools` on PATH and an empty CARGO_HOME, staged under `root`.
fn from_kit(kit: &Path, key: &Path, root: &Path, tools: &Path) -> Output {
    let home = tools.with_file_name("home");
    std::fs::create_dir_all(home.join("cargo")).expect("home");
    Command::new("unshare")
        .arg("--net")
        .args(["env", "-i"])
        .arg(format!("PATH={}", s(tools)))
        .arg(format!("HOME={}", s(&home)))
        .arg(format!("CARGO_HOME={}", s(&home.join("cargo"))))
        .arg(format!("DESTDIR={}", s(root)))
        .arg(which("bash"))
        .arg(kit.join("install.sh"))
        .args(["--from-kit", s(kit), "--trust-key", s(key)])
        .output()
        .expect("run install.sh --from-kit")
}

#[test]
fn kit_round_trip_installs_offline_and_answers() {
    require_tool("openssl");
    require_tool("unshare");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keys(&dir.path().join("keys"), "site");
    let kit = dir.path().join("kit");
    build_kit(&kit, &key);
    assert!(dir.path().join("kit.tar").is_file());

    // What the kit holds.
    for file in [
        "MANIFEST",
        "MANIFEST.sig",
        "install.sh",
        "bin/airlock",
        "systemd/airlock.service",
        "systemd/airlock.socket",
        "policy/airlock.example.toml",
        "docs/deployment.md",
        "docs/offline-kit.md",
        "share/airlock/sbom.cdx.json",
        "share/airlock/licenses.tsv",
        "models/smollm2-135m-instruct.q4_1-1.0.0.airlock",
    ] {
        assert!(kit.join(file).is_file(), "the kit lacks {file}");
    }
    assert_eq!(
        std::fs::read_to_string(kit.join("keys/publisher.pub"))
            .expect("publisher key")
            .trim(),
        std::fs::read_to_string(&public).expect("site.pub").trim()
    );
    let manifest = std::fs::read_to_string(kit.join("MANIFEST")).expect("MANIFEST");
    assert!(manifest.starts_with("airlock-kit-manifest-v1\nversion 0.1.0\ncommit "));
    assert!(manifest.contains(" bin/airlock\n") && !manifest.contains(" MANIFEST"));

    // The SBOM names every crate compiled into the binary, with its version and licence.
    let sbom: Value = serde_json::from_slice(
        &std::fs::read(kit.join("share/airlock/sbom.cdx.json")).expect("sbom"),
    )
    .expect("SBOM JSON");
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let mut listed = BTreeSet::new();
    let mut stack: Vec<&Value> = sbom["components"]
        .as_array()
        .expect("components")
        .iter()
        .collect();
    while let Some(c) = stack.pop() {
        listed.insert((
            c["name"].as_str().unwrap_or("").to_owned(),
            c["version"].as_str().unwrap_or("").to_owned(),
        ));
        stack.extend(c["components"].as_array().into_iter().flatten());
    }
    for (name, version) in compiled_crates() {
        assert!(
            listed.contains(&(name.clone(), version.clone())),
            "the SBOM lacks {name} {version}"
        );
    }
    let licences = std::fs::read_to_string(kit.join("share/airlock/licenses.tsv")).expect("tsv");
    for card in ["actix-web", "burn", "rustls", "ring", "sled", "tokio"] {
        let line = licences
            .lines()
            .find(|l| l.starts_with(&format!("{card}\t")))
            .unwrap_or_else(|| panic!("{card} missing from licenses.tsv"));
        assert!(!line.ends_with("\tunknown"), "{line}");
    }

    // The air-gapped host: no network, no cargo, pip or apt.
    let root = dir.path().join("root");
    let tools = offline_tools(dir.path());
    let out = from_kit(&kit, &public, &root, &tools);
    assert!(out.status.success(), "{}", both(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kit verified: "), "{err}");
    let at = |p: &str| root.join(p);
    assert_eq!(
        std::fs::read(at("usr/local/bin/airlock")).expect("installed binary"),
        std::fs::read(kit.join("bin/airlock")).expect("kit binary")
    );
    for file in [
        "etc/systemd/system/airlock.service",
        "etc/airlock/airlock.toml",
        "etc/airlock/keys/kit-publisher.pub",
        "usr/local/lib/airlock/install.sh",
        "usr/local/share/airlock/sbom.cdx.json",
        "usr/local/share/airlock/kit-MANIFEST",
        "var/lib/airlock/import/smollm2-135m-instruct.q4_1-1.0.0.airlock",
    ] {
        assert!(at(file).is_file(), "{file} not installed");
    }
    // `airlock version --json` ties the installed binary to its SBOM.
    let version = Command::new(at("usr/local/bin/airlock"))
        .args(["version", "--json"])
        .output()
        .expect("version");
    assert!(version.status.success(), "{}", both(&version));
    let version: Value = serde_json::from_slice(&version.stdout).expect("version JSON");
    assert_eq!(
        version["sbom_sha256"],
        crate::common::sha256_hex(
            &std::fs::read(at("usr/local/share/airlock/sbom.cdx.json")).expect("sbom")
        )
    );
    assert_eq!(
        version["binary_sha256"],
        crate::common::sha256_hex(&std::fs::read(kit.join("bin/airlock")).expect("bin"))
    );

    // The operator's part: TLS files and identities in the policy the kit installed (its
    // [trust] for the kit's key kept), then the service, which imports the bundle.
    let (mut server, client) = serve_installed(&root);
    let deadline = Instant::now() + Duration::from_secs(90);
    let health = loop {
        assert!(
            server.try_wait().expect("wait").is_none(),
            "the service exited"
        );
        if let Ok(r) = client.request("GET", "/healthz", None) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the installed service never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["identity"]["roles"], json!(["user"]));
    let answer = loop {
        assert!(
            server.try_wait().expect("wait").is_none(),
            "the service exited"
        );
        let body = json!({
            "model": "smollm2-135m-instruct.q4_1",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 8, "temperature": 0,
        });
        if let Ok(r) = client.request(
            "POST",
            "/v1/chat/completions",
            Some(body.to_string().as_bytes()),
        ) && r.status == 200
        {
            break r.json();
        }
        assert!(
            Instant::now() < deadline,
            "no answer: the kit's bundle was not activated"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{answer}"
    );
    assert!(
        at("var/lib/airlock/import/accepted").is_dir(),
        "the import took the bundle"
    );
}

/// Completes the policy a kit install left under `root` as an operator would (dev TLS files,
/// a `user` identity, the kit's [trust] kept) and starts the installed binary on it.
fn serve_installed(root: &Path) -> (std::process::Child, crate::common::Client) {
    let conf = root.join("etc/airlock");
    if !conf.join("pki/ca.crt").exists() {
        let out = command()
            .args(["pki", "dev", "--out", s(&conf.join("pki"))])
            .output()
            .expect("pki dev");
        assert!(out.status.success(), "{}", both(&out));
    }
    let installed = std::fs::read_to_string(conf.join("airlock.toml")).expect("policy");
    let trust = &installed[installed
        .find("# Added by install.sh --from-kit")
        .expect("the kit's trust section")..];
    let port = free_port();
    let policy = format!(
        "state_dir = \"{}\"\n[server]\nlisten = [\"127.0.0.1:{port}\"]\n\
         [tls]\ncert = \"pki/server.crt\"\nkey = \"pki/server.key\"\nclient_ca = [\"pki/ca.crt\"]\n\
         [[identity]]\nroles = [\"user\"]\nmatch = {{ cn = \"user\" }}\n{trust}",
        s(&root.join("var/lib/airlock"))
    );
    std::fs::write(conf.join("airlock.toml"), policy).expect("policy");
    let server = Command::new(root.join("usr/local/bin/airlock"))
        .args(["serve", "--config", s(&conf.join("airlock.toml"))])
        .env("AIRLOCK_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    (server, Fixture::from_dir(&conf, port).client(Some("user")))
}

/// The `(name, version)` of every package `cargo tree` says is compiled into the airlock
/// binary (normal dependencies, this host).
fn compiled_crates() -> BTreeSet<(String, String)> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(crate::support::repo())
        .args([
            "tree",
            "-p",
            "appliance",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--locked",
            "--offline",
        ])
        .output()
        .expect("cargo tree");
    assert!(out.status.success(), "{}", both(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("(/") && !l.trim().is_empty())
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?.to_owned();
            let version = parts.next()?.trim_start_matches('v').to_owned();
            Some((name, version))
        })
        .collect()
}

#[test]
fn tampered_kits_are_refused_with_nothing_written() {
    require_tool("openssl");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keys(&dir.path().join("keys"), "site");
    let (other_key, _) = keys(&dir.path().join("keys"), "mallory");
    let kit = dir.path().join("kit");
    build_kit(&kit, &key);
    let tools = offline_tools(dir.path());

    let flip = |path: &Path| {
        let mut bytes = std::fs::read(path).expect("read");
        let i = bytes.len() / 2;
        bytes[i] ^= 0x01;
        std::fs::write(path, bytes).expect("write");
    };
    type Tamper = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "binary",
            Box::new(move |k| flip(&k.join("bin/airlock"))),
            "bin/airlock: SHA-256 differs",
        ),
        (
            "bundle",
            Box::new(move |k| flip(&k.join("models/smollm2-135m-instruct.q4_1-1.0.0.airlock"))),
            "models/smollm2-135m-instruct.q4_1-1.0.0.airlock: SHA-256 differs",
        ),
        (
            "unit",
            Box::new(|k| {
                let unit = k.join("systemd/airlock.service");
                let text = std::fs::read_to_string(&unit).expect("unit");
                // Same size, one setting changed.
                std::fs::write(
                    &unit,
                    text.replacen("PrivateNetwork=yes", "PrivateNetwork=no ", 1),
                )
                .expect("write");
            }),
            "systemd/airlock.service: SHA-256 differs",
        ),
        (
            "added file",
            Box::new(|k| std::fs::write(k.join("bin/helper"), b"#!/bin/sh\n").expect("add")),
            "bin/helper: in the kit but not in MANIFEST",
        ),
        (
            "removed file",
            Box::new(|k| std::fs::remove_file(k.join("docs/deployment.md")).expect("rm")),
            "docs/deployment.md: listed in MANIFEST but missing",
        ),
        (
            "symlink",
            Box::new(|k| {
                std::os::unix::fs::symlink("/etc/shadow", k.join("docs/shadow")).expect("link")
            }),
            "docs/shadow: not a regular file",
        ),
        (
            "edited MANIFEST",
            Box::new(|k| {
                let m = k.join("MANIFEST");
                let text = std::fs::read_to_string(&m).expect("manifest");
                std::fs::write(&m, text.replacen("version 0.1.0", "version 0.1.1", 1)).expect("w");
            }),
            "the signature does not verify",
        ),
        (
            "signed by another key",
            Box::new(move |k| {
                for f in ["MANIFEST", "MANIFEST.sig", "keys/publisher.pub"] {
                    std::fs::remove_file(k.join(f)).expect("rm");
                }
                let out = command()
                    .args(["kit", "sign", "--dir", s(k), "--key", s(&other_key)])
                    .output()
                    .expect("kit sign");
                assert!(out.status.success(), "{}", both(&out));
            }),
            "the signature does not verify",
        ),
        (
            "unsigned MANIFEST",
            Box::new(|k| std::fs::remove_file(k.join("MANIFEST.sig")).expect("rm")),
            "is not signed (no MANIFEST.sig)",
        ),
    ];
    for (what, tamper, expected) in cases {
        let copy = dir.path().join(format!("kit-{}", what.replace(' ', "-")));
        let cp = Command::new("cp")
            .arg("-a")
            .arg(&kit)
            .arg(&copy)
            .status()
            .expect("cp");
        assert!(cp.success());
        tamper(&copy);
        let root = dir.path().join(format!("root-{}", what.replace(' ', "-")));
        // The pristine install.sh runs (as an upgrade runs the installed copy): the kit's
        // own script is among what is tampered with in real attacks, see docs/offline-kit.md.
        let out = Command::new("unshare")
            .arg("--net")
            .args(["env", "-i"])
            .arg(format!("PATH={}", s(&tools)))
            .arg(format!("DESTDIR={}", s(&root)))
            .arg(which("bash"))
            .arg(kit.join("install.sh"))
            .args(["--from-kit", s(&copy), "--trust-key", s(&public)])
            .output()
            .expect("install.sh --from-kit");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", both(&out));
        assert!(
            err.contains(expected),
            "{what}: expected {expected:?} in {err}"
        );
        assert!(
            err.contains("nothing installed") || err.contains("verify"),
            "{what}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line: {err}");
        assert!(
            !root.exists(),
            "{what}: something was written under the root"
        );
    }
    // The untouched kit installs with the same script and key.
    let root = dir.path().join("root-ok");
    let out = from_kit(&kit, &public, &root, &tools);
    assert!(out.status.success(), "{}", both(&out));
}

fn release_of(link: &Path) -> String {
    let target = std::fs::read_link(link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    let text = target.to_str().expect("utf-8 link").to_owned();
    text.split('/')
        .find(|c| c.len() == 64)
        .unwrap_or_else(|| panic!("{text}: no release digest"))
        .to_owned()
}

/// Install from one kit, upgrade from a second with the installed install.sh, roll back by
/// hand: releases side by side, the links switched, and each step a `software.install`
/// record once the service starts (a malformed receipt recorded as such), the log verifying.
#[test]
fn upgrade_and_rollback_switch_releases_and_are_audited() {
    require_tool("openssl");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keys(&dir.path().join("keys"), "site");
    // Two different binaries: the second is the first with a trailing byte (still runs).
    let first = Path::new(crate::common::BIN);
    let second = dir.path().join("airlock-2");
    let mut bytes = std::fs::read(first).expect("binary");
    let sha1 = crate::common::sha256_hex(&bytes);
    bytes.push(0);
    let sha2 = crate::common::sha256_hex(&bytes);
    std::fs::write(&second, &bytes).expect("second binary");
    std::fs::set_permissions(&second, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let (kit1, kit2) = (dir.path().join("kit1"), dir.path().join("kit2"));
    build_kit_of(&kit1, &key, first);
    build_kit_of(&kit2, &key, &second);
    let manifest_sha = |kit: &Path| {
        crate::common::sha256_hex(&std::fs::read(kit.join("MANIFEST")).expect("MANIFEST"))
    };

    let root = dir.path().join("root");
    let tools = offline_tools(dir.path());
    let out = from_kit(&kit1, &public, &root, &tools);
    assert!(out.status.success(), "{}", both(&out));
    let bin = root.join("usr/local/bin/airlock");
    let previous = root.join("usr/local/lib/airlock/previous");
    assert_eq!(release_of(&bin), sha1);
    assert!(!previous.exists());

    // The upgrade runs the installed (trusted) copy of install.sh on the new kit.
    let installed_sh = root.join("usr/local/lib/airlock/install.sh");
    let upgrade = Command::new("unshare")
        .arg("--net")
        .args(["env", "-i"])
        .arg(format!("PATH={}", s(&tools)))
        .arg(format!("DESTDIR={}", s(&root)))
        .arg(which("bash"))
        .arg(&installed_sh)
        .args(["--from-kit", s(&kit2), "--trust-key", s(&public)])
        .output()
        .expect("upgrade");
    assert!(upgrade.status.success(), "{}", both(&upgrade));
    assert_eq!(release_of(&bin), sha2);
    assert_eq!(release_of(&previous), sha1);
    assert!(
        root.join(format!("usr/local/lib/airlock/releases/{sha1}/airlock"))
            .is_file()
    );

    let rollback = Command::new("bash")
        .arg(&installed_sh)
        .arg("--rollback")
        .env("DESTDIR", &root)
        .output()
        .expect("rollback");
    assert!(rollback.status.success(), "{}", both(&rollback));
    assert_eq!(release_of(&bin), sha1);
    assert_eq!(release_of(&previous), sha2);
    // The release keeps its own SBOM: `airlock version` after the rollback names kit1's.
    let version = Command::new(&bin)
        .args(["version", "--json"])
        .output()
        .expect("version");
    let version: Value = serde_json::from_slice(&version.stdout).expect("version JSON");
    assert_eq!(version["binary_sha256"], sha1.as_str());
    assert_eq!(
        version["sbom_sha256"],
        crate::common::sha256_hex(
            &std::fs::read(kit1.join("share/airlock/sbom.cdx.json")).expect("sbom")
        )
    );

    // Something unexpected among the receipts is recorded, not ignored.
    let pending = root.join("var/lib/airlock/install/pending");
    std::fs::write(pending.join("zz-odd.json"), r#"{"action":"reboot"}"#).expect("odd receipt");
    let receipts = std::fs::read_dir(&pending).expect("pending").count();
    assert_eq!(receipts, 4, "install, upgrade, rollback and the odd one");

    // The service records them at its start; the log verifies.
    let (mut server, client) = serve_installed(&root);
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .request("GET", "/healthz", None)
        .map(|r| r.status)
        .ok()
        != Some(200)
    {
        assert!(
            server.try_wait().expect("wait").is_none(),
            "the service exited"
        );
        assert!(
            Instant::now() < deadline,
            "the installed service never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let status = server.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert_eq!(
        std::fs::read_dir(&pending).expect("pending").count(),
        0,
        "receipts consumed"
    );
    assert!(
        root.join("var/lib/airlock/install/rejected/zz-odd.json")
            .is_file()
    );

    let state = root.join("var/lib/airlock");
    let records = crate::common::export_and_verify_state(&state);
    let installs: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "software.install")
        .collect();
    let actions: Vec<&str> = installs
        .iter()
        .map(|r| r["status"].as_str().expect("status"))
        .collect();
    assert_eq!(
        actions,
        ["install", "upgrade", "rollback", "malformed"],
        "{installs:?}"
    );
    assert_eq!(installs[0]["params"]["binary_sha256"], sha1.as_str());
    assert_eq!(
        installs[0]["params"]["kit_manifest_sha256"],
        manifest_sha(&kit1).as_str()
    );
    assert_eq!(
        installs[0]["params"]["kit_signer"],
        std::fs::read_to_string(&public).expect("pub").trim()
    );
    assert_eq!(installs[1]["params"]["binary_sha256"], sha2.as_str());
    assert_eq!(installs[1]["params"]["previous_sha256"], sha1.as_str());
    assert_eq!(
        installs[1]["params"]["kit_manifest_sha256"],
        manifest_sha(&kit2).as_str()
    );
    assert_eq!(installs[2]["params"]["binary_sha256"], sha1.as_str());
    assert_eq!(installs[2]["params"]["previous_sha256"], sha2.as_str());
    assert!(installs[2]["params"].get("kit_manifest_sha256").is_none());
    assert!(
        installs[3]["params"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    // They precede the start of the binary they describe.
    let start = records
        .iter()
        .position(|r| r["kind"] == "service.start")
        .expect("start");
    let last_install = records
        .iter()
        .rposition(|r| r["kind"] == "software.install")
        .expect("install");
    assert!(last_install < start);
}

/// Runs inside the booted container: installs kit1 and enables the service, waits for the
/// model it brought, then upgrades to kit2 under a request loop (with the installed
/// install.sh), then to the broken kit3 (rolled back automatically), and exports the log.
const UPGRADE_PROBE: &str = r#"#!/bin/bash
exec > /out/probe.log 2>&1
set -x
P=/etc/airlock/pki
C="--max-time 60 --cacert $P/ca.crt --resolve localhost:8443:127.0.0.1 --cert $P/user.crt --key $P/user.key"
BODY='{"model":"smollm2-135m-instruct.q4_1","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}'
chat() { curl -s -o /dev/null -w '%{http_code}' $C -H 'Content-Type: application/json' -d "$BODY" https://localhost:8443/v1/chat/completions; }
/kits/kit1/install.sh --from-kit /kits/kit1 --trust-key /kits/site.pub --enable; echo $? > /out/install1.rc
i=0; until [ "$(chat)" = 200 ]; do i=$((i+1)); [ $i -ge 120 ] && break; sleep 0.5; done
echo "$(chat)" > /out/first.txt
readlink /usr/local/bin/airlock > /out/release1.txt
# Requests all through the upgrade.
( while [ ! -e /tmp/stop ]; do chat >> /out/during.txt; echo >> /out/during.txt; done ) &
LOOP=$!
sleep 1
/usr/local/lib/airlock/install.sh --from-kit /kits/kit2 --trust-key /kits/site.pub > /out/upgrade2.txt 2>&1; echo $? > /out/upgrade2.rc
sleep 1
touch /tmp/stop; wait $LOOP
readlink /usr/local/bin/airlock > /out/release2.txt
/usr/local/lib/airlock/install.sh --from-kit /kits/kit3 --trust-key /kits/site.pub > /out/upgrade3.txt 2>&1; echo $? > /out/upgrade3.rc
readlink /usr/local/bin/airlock > /out/release3.txt
systemctl is-active airlock.service > /out/active3.txt
echo "$(chat)" > /out/after.txt
systemctl stop airlock.service
/usr/local/bin/airlock audit pubkey --state /var/lib/airlock > /out/audit.pub
/usr/local/bin/airlock audit export --state /var/lib/airlock --out /out/audit.jsonl
journalctl -u airlock.service --no-pager > /out/journal.txt
echo done > /out/done.txt
systemctl poweroff --no-block
"#;

/// The upgrade path under the host's real systemd (a throw-away container, as
/// nspawn::shipped_units_serve_under_real_systemd): every request during the switch is
/// answered (200, or a retryable 503), a binary that cannot start is rolled back
/// automatically, and the audit log verifies across all of it.
#[test]
fn upgrade_under_systemd_keeps_serving_and_rolls_back_a_broken_binary() {
    require_tool("systemd-nspawn");
    require_tool("curl");
    require_tool("openssl");
    const AIRLOCK_ID: u32 = 991;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let kits = d.join("kits");
    // site.key and site.pub in /kits (the container verifies with /kits/site.pub).
    let (key, _) = keys(&kits, "site");
    let first = Path::new(crate::common::BIN);
    let second = d.join("airlock-2");
    let mut bytes = std::fs::read(first).expect("binary");
    let sha1 = crate::common::sha256_hex(&bytes);
    bytes.push(0);
    let sha2 = crate::common::sha256_hex(&bytes);
    std::fs::write(&second, &bytes).expect("second binary");
    let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&second, exec).expect("chmod");
    build_kit_of(&kits.join("kit1"), &key, first);
    build_kit_of(&kits.join("kit2"), &key, &second);
    // kit3: a correctly signed kit whose binary cannot start (a publisher's broken build).
    let cp = Command::new("cp")
        .arg("-a")
        .arg(kits.join("kit2"))
        .arg(kits.join("kit3"))
        .status()
        .expect("cp");
    assert!(cp.success());
    let broken = "#!/bin/sh\necho 'broken build' >&2\nexit 3\n";
    let sha3 = crate::common::sha256_hex(broken.as_bytes());
    std::fs::write(kits.join("kit3/bin/airlock"), broken).expect("broken binary");
    for f in ["MANIFEST", "MANIFEST.sig", "keys/publisher.pub"] {
        std::fs::remove_file(kits.join("kit3").join(f)).expect("rm");
    }
    let signed = command()
        .args([
            "kit",
            "sign",
            "--dir",
            s(&kits.join("kit3")),
            "--key",
            s(&key),
        ])
        .output()
        .expect("kit sign");
    assert!(signed.status.success(), "{}", both(&signed));
    std::fs::remove_file(&key).expect("the key stays on the build station");

    // /etc/airlock as the operator leaves it: dev TLS files, identities, trust in the kit key.
    let etc = d.join("etc-airlock");
    let made = command()
        .args(["pki", "dev", "--out", s(&etc.join("pki"))])
        .output()
        .expect("pki dev");
    assert!(made.status.success(), "{}", both(&made));
    std::fs::write(
        etc.join("airlock.toml"),
        "state_dir = \"/var/lib/airlock\"\n[tls]\ncert = \"pki/server.crt\"\n\
         key = \"pki/server.key\"\nclient_ca = [\"pki/ca.crt\"]\n\
         [[identity]]\nroles = [\"user\"]\nmatch = { cn = \"user\" }\n\
         [trust]\nthreshold = 1\nallowed_names = [\"smollm2-*\"]\n\
         [[trust.publisher]]\nname = \"kit publisher\"\nkey_file = \"keys/kit-publisher.pub\"\n",
    )
    .expect("policy");
    production_modes(&etc, AIRLOCK_ID);
    let (passwd, group) = container_users(d, AIRLOCK_ID);
    let probe = d.join("probe");
    std::fs::create_dir_all(&probe).expect("probe dir");
    std::fs::write(probe.join("probe.sh"), UPGRADE_PROBE).expect("probe");
    std::fs::set_permissions(
        probe.join("probe.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::write(
        probe.join("airlock-probe.service"),
        "[Unit]\nDescription=Upgrade probe\nAfter=multi-user.target\n\
         [Service]\nType=oneshot\nExecStart=/probe/probe.sh\nTimeoutStartSec=600\n",
    )
    .expect("unit");
    let usr_local = d.join("usr-local");
    std::fs::create_dir_all(&usr_local).expect("usr-local");
    let out = d.join("out");
    std::fs::create_dir_all(&out).expect("out");

    let p = |path: &Path| s(path).to_owned();
    let boot = Command::new("timeout")
        .args([
            "600",
            "systemd-nspawn",
            "--quiet",
            "--keep-unit",
            "--register=no",
        ])
        .args([
            "--directory=/",
            "--volatile=yes",
            "--private-network",
            "--boot",
        ])
        .arg(format!("--machine=airlock-upgrade-{}", std::process::id()))
        .arg(
            "--system-call-filter=landlock_create_ruleset landlock_add_rule landlock_restrict_self",
        )
        .arg(format!(
            "--bind-ro={}:/etc/systemd/system/airlock-probe.service",
            p(&probe.join("airlock-probe.service"))
        ))
        .arg("--bind-ro=/dev/null:/etc/systemd/system/nftables.service")
        .arg(format!("--bind-ro={}:/etc/passwd", p(&passwd)))
        .arg(format!("--bind-ro={}:/etc/group", p(&group)))
        .arg(format!("--bind-ro={}:/probe", p(&probe)))
        .arg(format!("--bind-ro={}:/kits", p(&kits)))
        .arg(format!("--bind={}:/etc/airlock", p(&etc)))
        .arg(format!("--bind={}:/usr/local", p(&usr_local)))
        .arg(format!("--bind={}:/out", p(&out)))
        .arg("systemd.firstboot=off")
        // Pulled in at boot, without a read-only wants directory in the way of `enable`.
        .arg("systemd.wants=airlock-probe.service")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("systemd-nspawn");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let context = || {
        format!(
            "{}\nprobe:\n{}\nupgrade2:\n{}\nupgrade3:\n{}\njournal:\n{}",
            both(&boot),
            read("probe.log"),
            read("upgrade2.txt"),
            read("upgrade3.txt"),
            read("journal.txt")
        )
    };
    assert_eq!(
        read("done.txt").trim(),
        "done",
        "the probe did not finish: {}",
        context()
    );
    assert_eq!(read("install1.rc").trim(), "0", "{}", context());
    assert_eq!(read("first.txt").trim(), "200", "{}", context());
    assert!(read("release1.txt").contains(&sha1), "{}", context());

    // The upgrade: exit 0, the new release serving, and every request answered meanwhile.
    assert_eq!(read("upgrade2.rc").trim(), "0", "{}", context());
    assert!(read("release2.txt").contains(&sha2), "{}", context());
    let during: Vec<String> = read("during.txt")
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        during.len() >= 3,
        "too few requests during the upgrade: {during:?}"
    );
    assert!(
        during.iter().all(|c| c == "200" || c == "503"),
        "a request failed during the switch: {during:?}\n{}",
        context()
    );
    assert!(during.iter().any(|c| c == "200"));

    // The broken kit: refused at start, rolled back automatically, the service serving.
    assert_eq!(read("upgrade3.rc").trim(), "1", "{}", context());
    assert!(
        read("upgrade3.txt").contains("rolled back to release"),
        "{}",
        context()
    );
    assert!(read("release3.txt").contains(&sha2), "{}", context());
    assert_eq!(read("active3.txt").trim(), "active", "{}", context());
    assert_eq!(read("after.txt").trim(), "200", "{}", context());

    // The log verifies across all of it and tells the story.
    let verify = command()
        .args([
            "audit",
            "verify",
            "--export",
            s(&out.join("audit.jsonl")),
            "--key",
            s(&out.join("audit.pub")),
        ])
        .output()
        .expect("verify");
    assert!(verify.status.success(), "{}", both(&verify));
    let records: Vec<Value> = read("audit.jsonl")
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    let installs: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["kind"] == "software.install")
        .map(|r| {
            (
                r["status"].as_str().unwrap_or("").to_owned(),
                r["params"]["binary_sha256"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        installs,
        [
            ("install".to_owned(), sha1.clone()),
            ("upgrade".to_owned(), sha2.clone()),
            ("upgrade".to_owned(), sha3.clone()),
            ("rollback".to_owned(), sha2.clone()),
        ],
        "{}",
        context()
    );
}
