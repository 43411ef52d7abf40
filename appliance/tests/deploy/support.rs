//! Paths and tools shared by the deployment tests.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (the workspace above the `appliance` crate).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("appliance has a parent")
        .to_path_buf()
}

/// A file of the repository.
pub fn repo_file(rel: &str) -> PathBuf {
    repo().join(rel)
}

/// Fails (never skips) when a tool the tests need is missing.
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: run ./install.sh --test (it installs what the tests need)"
    );
}

/// `bash install.sh ARGS` from the repository root, with a test-controlled environment:
/// the already built binary instead of a release build, no DESTDIR unless given.
pub fn install_sh() -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_file("install.sh"))
        .current_dir(repo())
        .env("AIRLOCK_BIN", crate::common::BIN)
        .env_remove("DESTDIR")
        .env_remove("RUST_BACKTRACE");
    cmd
}

/// stdout + stderr as text, for assertion messages.
pub fn both(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
