use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{both, install_sh, repo_file};

fn run(root: &Path, args: &[&str]) -> String {
    let out = install_sh()
        .args(args)
        .env("DESTDIR", root)
        .output()
        .expect("run install.sh");
    assert!(out.status.success(), "install.sh {args:?}: {}", both(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn production_layout_modes_idempotence_and_uninstall() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    run(root, &[]);
    let at = |p: &str| root.join(p);
    assert_eq!(mode(&at("usr/local/bin/airlock")), 0o755);
    assert_eq!(mode(&at("etc/airlock")), 0o750);
    assert_eq!(mode(&at("etc/airlock/airlock.toml")), 0o640);
    assert_eq!(mode(&at("var/lib/airlock")), 0o700);
    for unit in ["airlock.socket", "airlock.service"] {
        assert_eq!(
            std::fs::read(at(&format!("etc/systemd/system/{unit}"))).expect("unit"),
            std::fs::read(repo_file(&format!("systemd/{unit}"))).expect("repo unit"),
            "{unit} installed as shipped"
        );
    }
    assert_eq!(
        std::fs::read(at("usr/local/bin/airlock")).expect("bin"),
        std::fs::read(crate::common::BIN).expect("built bin")
    );

    // Second run: same result, and the operator's edited policy is kept.
    let policy = at("etc/airlock/airlock.toml");
    std::fs::write(&policy, "# edited by the operator\n").expect("edit");
    let second = run(root, &[]);
    assert!(!second.contains("wrote the policy template"), "{second}");
    assert_eq!(
        std::fs::read_to_string(&policy).expect("policy"),
        "# edited by the operator\n"
    );
    std::fs::write(at("var/lib/airlock/audit.db"), "records").expect("state");

    // Uninstall keeps configuration and state; --purge removes them.
    run(root, &["--uninstall"]);
    assert!(!at("usr/local/bin/airlock").exists());
    assert!(!at("etc/systemd/system/airlock.service").exists());
    assert!(!at("etc/systemd/system/airlock.socket").exists());
    assert!(policy.exists(), "configuration kept");
    assert!(at("var/lib/airlock/audit.db").exists(), "state kept");
    run(root, &["--uninstall"]);
    run(root, &["--uninstall", "--purge"]);
    assert!(!at("etc/airlock").exists());
    assert!(!at("var/lib/airlock").exists());
}

/// The template installed as /etc/airlock/airlock.toml is the documented example, and
/// `airlock policy check` reads it far enough to name the first missing TLS file.
#[test]
fn policy_template_names_what_the_operator_must_provide() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(dir.path(), &[]);
    let policy = dir.path().join("etc/airlock/airlock.toml");
    let out = crate::common::airlock(&[
        "policy",
        "check",
        "--config",
        policy.to_str().expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{}", both(&out));
    assert!(err.contains("pki/server.crt"), "{err}");
}

/// `--firewall` stages the firewall script and its boot unit (the rules themselves are only
/// loaded on a real install); `--uninstall` removes both.
#[test]
fn firewall_is_installed_for_every_boot_and_uninstalled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    run(root, &["--firewall"]);
    let script = root.join("usr/local/lib/airlock/firewall.sh");
    let unit = root.join("etc/systemd/system/airlock-firewall.service");
    assert_eq!(mode(&script), 0o755);
    assert_eq!(
        std::fs::read(&script).expect("script"),
        std::fs::read(repo_file("scripts/firewall.sh")).expect("repo script")
    );
    let text = std::fs::read_to_string(&unit).expect("unit");
    assert!(
        text.contains("ExecStart=/usr/local/lib/airlock/firewall.sh apply airlock"),
        "{text}"
    );
    assert!(
        text.contains("Before=network-pre.target airlock.socket"),
        "{text}"
    );
    run(root, &["--firewall"]);
    run(root, &["--uninstall"]);
    assert!(!script.exists() && !unit.exists());
}
