use std::process::Command;

use crate::support::{both, repo_file, require_tool};

/// The target of ARCHITECTURE.md section 8 (a hardened socket-activated unit rates about 0.2).
const MAX_EXPOSURE: f64 = 1.0;

/// Runs `systemd-analyze security --offline=yes UNIT` and returns the overall exposure.
fn exposure(unit: &std::path::Path) -> f64 {
    require_tool("systemd-analyze");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    // "→ Overall exposure level for airlock.service: 0.2 SAFE 😀"
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no overall exposure line:\n{}", both(&out)));
    let value = line
        .rsplit_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("cannot parse the exposure in {line:?}"));
    println!("{}: {line}", unit.display());
    value
}

#[test]
fn airlock_service_exposure_is_at_most_one() {
    let value = exposure(&repo_file("systemd/airlock.service"));
    assert!(
        value <= MAX_EXPOSURE,
        "exposure {value} > {MAX_EXPOSURE}: see `systemd-analyze security --offline=yes systemd/airlock.service`"
    );
}

/// The measurement can fail: the same service without its sandbox rates far worse.
#[test]
fn an_unhardened_unit_rates_above_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("plain.service");
    std::fs::write(
        &unit,
        "[Service]\nType=notify\nExecStart=/usr/local/bin/airlock serve --config /etc/airlock/airlock.toml\nUser=airlock\n",
    )
    .expect("write unit");
    let value = exposure(&unit);
    assert!(value > MAX_EXPOSURE, "unhardened unit rated {value}");
}
