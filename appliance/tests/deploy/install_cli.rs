use crate::support::{both, install_sh};

/// Runs install.sh and expects a refusal: exit 2, nothing on stdout, exactly one stderr
/// line, which contains `needle`.
fn refused(args: &[&str], needle: &str) {
    let out = install_sh().args(args).output().expect("run install.sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", both(&out));
    assert!(out.stdout.is_empty(), "{args:?}: {}", both(&out));
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(err.starts_with("install.sh: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

#[test]
fn help_lists_every_mode() {
    let out = install_sh().arg("--help").output().expect("run install.sh");
    assert!(out.status.success(), "{}", both(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    for mode in [
        "./install.sh --dev",
        "./install.sh --test",
        "sudo ./install.sh [--enable] [--firewall]",
        "--uninstall [--purge]",
        "./install.sh --kit --sign KEY [--out DIR] [--no-source]",
        "sudo ./install.sh --from-kit DIR --trust-key K.pub",
        "AIRLOCK_BIN",
    ] {
        assert!(help.contains(mode), "--help lacks {mode:?}:\n{help}");
    }
    assert!(out.stderr.is_empty(), "{}", both(&out));
}

#[test]
fn unknown_flag_is_one_line_and_exit_2() {
    refused(&["--frobnicate"], "unknown option '--frobnicate'");
    refused(&["--dev", "extra"], "unknown option 'extra'");
}

#[test]
fn misplaced_flags_are_refused() {
    refused(&["--state", "/tmp/x"], "--state and --listen go with --dev");
    refused(&["--dev", "--state"], "--state needs a value");
    refused(&["--dev", "--test"], "cannot be combined");
    refused(
        &["--test", "--enable"],
        "--enable and --firewall go with the production install",
    );
    refused(&["--purge"], "--purge goes with --uninstall");
    refused(&["--kit"], "--kit needs --sign KEY");
    refused(
        &["--from-kit", "/tmp/kit"],
        "--from-kit needs --trust-key K.pub",
    );
    refused(
        &["--trust-key", "k.pub"],
        "--trust-key goes with --from-kit",
    );
    refused(
        &["--dev", "--sign", "k.key"],
        "--out, --sign and --no-source go with --kit",
    );
    refused(&["--kit", "--from-kit", "/tmp/kit"], "cannot be combined");
}

/// `--firewall` delegates to scripts/firewall.sh (ARCHITECTURE.md §8); in a checkout without
/// it, install.sh fails with one clear line before anything is built or installed.
#[test]
fn firewall_fails_clearly_before_installing() {
    let root = tempfile::tempdir().expect("tempdir");
    let checkout = tempfile::tempdir().expect("tempdir");
    let script = checkout.path().join("install.sh");
    std::fs::copy(crate::support::repo_file("install.sh"), &script).expect("copy install.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("--firewall")
        .env("DESTDIR", root.path())
        .env("AIRLOCK_BIN", crate::common::BIN)
        .output()
        .expect("run install.sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--firewall: scripts/firewall.sh is not in this checkout"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(root.path())
            .expect("root")
            .next()
            .is_none(),
        "nothing may be installed when --firewall cannot work"
    );
}

/// The shell scripts a new user runs pass shellcheck (and bash's own syntax check).
#[test]
fn scripts_pass_shellcheck() {
    crate::support::require_tool("shellcheck");
    let scripts = [
        "install.sh",
        ".ci/run",
        "scripts/fetch-default-model.sh",
        "scripts/firewall.sh",
        "scripts/provision-llvm.sh",
        "scripts/build-gpu.sh",
        "scripts/gpu-smoke.sh",
        "bench/gpu.sh",
        "scripts/gpu-tests.sh",
        ".ci/check-deps.sh",
    ];
    let out = std::process::Command::new("shellcheck")
        .args(scripts)
        .current_dir(crate::support::repo())
        .output()
        .expect("run shellcheck");
    assert!(out.status.success(), "shellcheck: {}", both(&out));
    for script in scripts {
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg(crate::support::repo_file(script))
            .output()
            .expect("run bash -n");
        assert!(out.status.success(), "bash -n {script}: {}", both(&out));
    }
}
