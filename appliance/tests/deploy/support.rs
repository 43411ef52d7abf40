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

/// Gives `etc` (an `/etc/airlock` to bind into a container) the production install's
/// ownership and modes: root:airlock (`gid`), directories 0750, files 0640.
pub fn production_modes(etc: &Path, gid: u32) {
    use std::os::unix::fs::PermissionsExt;
    let mut paths = vec![etc.to_path_buf()];
    let mut i = 0;
    while i < paths.len() {
        if paths[i].is_dir() {
            for entry in std::fs::read_dir(&paths[i]).expect("read dir") {
                paths.push(entry.expect("entry").path());
            }
        }
        i += 1;
    }
    for path in paths {
        let mode = if path.is_dir() { 0o750 } else { 0o640 };
        std::os::unix::fs::chown(&path, Some(0), Some(gid)).expect("chown");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

/// The host's `/etc/passwd` and `/etc/group` with an `airlock` user and group of id `id`,
/// written into `dir` for a volatile container (whose /etc is empty); returns their paths.
pub fn container_users(dir: &Path, id: u32) -> (PathBuf, PathBuf) {
    let with_airlock = |file: &str, line: String| {
        let text = std::fs::read_to_string(file).expect("host file");
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with("airlock:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let path = dir.join(Path::new(file).file_name().expect("name"));
        std::fs::write(&path, kept + &line).expect("write");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("chmod");
        path
    };
    (
        with_airlock(
            "/etc/passwd",
            format!("airlock:x:{id}:{id}::/var/lib/airlock:/usr/sbin/nologin\n"),
        ),
        with_airlock("/etc/group", format!("airlock:x:{id}:\n")),
    )
}
