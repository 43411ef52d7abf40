//! Build facts for `airlock version`: the source commit and a build time that the source
//! fixes (so two builds of one commit agree), from the environment when the source has no
//! git history (an offline kit's vendored tree sets them in its `.cargo/config.toml`).
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=AIRLOCK_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // A new commit or checkout changes HEAD (or the branch it points to).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
    }
    let commit = std::env::var("AIRLOCK_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    // SOURCE_DATE_EPOCH (reproducible-builds.org), else the commit's time.
    let time = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| git(&["log", "-1", "--format=%ct"]))
        .unwrap_or_else(|| "0".to_owned());
    println!("cargo:rustc-env=AIRLOCK_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=AIRLOCK_SOURCE_EPOCH={time}");
}
