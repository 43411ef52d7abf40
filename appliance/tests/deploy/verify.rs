use std::path::Path;
use std::process::Command;

use crate::support::{both, install_sh, require_tool};

/// Stages the production install with the firewall unit under `root` (install.sh
/// --firewall with DESTDIR, the real binary),
/// plus the host's own unit library (`sysinit.target` etc.) that verify resolves against.
fn staged_root(root: &Path) {
    require_tool("systemd-analyze");
    let out = install_sh()
        .arg("--firewall")
        .env("DESTDIR", root)
        .output()
        .expect("run install.sh");
    assert!(out.status.success(), "staged install: {}", both(&out));
    let lib = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&lib).expect("mkdir");
    for entry in std::fs::read_dir("/usr/lib/systemd/system").expect("host unit library") {
        let path = entry.expect("entry").path();
        // Only plain unit files: verify needs the targets, not the host's drop-in trees.
        if path.is_file() && !path.is_symlink() {
            std::fs::copy(&path, lib.join(path.file_name().expect("name"))).expect("copy");
        }
    }
}

/// `systemd-analyze verify --root=ROOT UNITS`: it exits 0 even on typos, so the verdict
/// is its output, which must be empty.
fn verify(root: &Path) -> (bool, String) {
    require_tool("systemd-analyze");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args([
            "airlock.socket",
            "airlock.service",
            "airlock-firewall.service",
        ])
        .output()
        .expect("run systemd-analyze verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn installed_units_verify_without_any_output() {
    let root = tempfile::tempdir().expect("tempdir");
    staged_root(root.path());
    let (ok, text) = verify(root.path());
    assert!(ok && text.is_empty(), "systemd-analyze verify:\n{text}");
}

/// The check can fail: a misspelt directive and a missing binary are both reported.
#[test]
fn verify_reports_a_typo_and_a_missing_binary() {
    let root = tempfile::tempdir().expect("tempdir");
    staged_root(root.path());
    let unit = root.path().join("etc/systemd/system/airlock.service");
    let text = std::fs::read_to_string(&unit).expect("unit");
    let broken = text.replacen("LockPersonality=yes", "LockPersonalty=yes", 1);
    assert_ne!(broken, text, "the unit sets LockPersonality=yes");
    std::fs::write(&unit, broken).expect("write");
    std::fs::remove_file(root.path().join("usr/local/bin/airlock")).expect("rm binary");
    let (_, text) = verify(root.path());
    assert!(
        text.contains("Unknown key 'LockPersonalty'"),
        "typo not reported:\n{text}"
    );
    assert!(
        text.contains("/usr/local/bin/airlock is not executable"),
        "missing binary not reported:\n{text}"
    );
}
