//! `scripts/firewall.sh` loaded inside the test's `appliance` namespace: a process of the
//! service uid cannot open TCP, UDP or DNS traffic to `outside` (and the rule's counter
//! shows the attempts), while another uid can; `--remove` lifts it. The real service
//! running as that uid still serves clients from `outside`, and the canary counter stays 0.
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::netns::NetnsPair;
use crate::probe::{hits, honeypot};
use crate::roles::HONEYPOT_PORT;
use crate::service;
use crate::util::{Watched, require, run};

/// The service uid in the test (no such user needs to exist).
const SERVICE_UID: &str = "64321";
/// Any other uid.
const OTHER_UID: &str = "64322";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/firewall.sh")
}

/// As `uid` in the appliance namespace: TCP connect + send, UDP send, DNS lookup, each
/// tagged; returns whether the TCP connect and the DNS lookup succeeded.
fn attempt(pair: &NetnsPair, uid: &str, tag: &str) -> (bool, bool) {
    let ip = pair.outside_ip;
    let as_uid = |shell: &str| {
        pair.exec(&pair.appliance, "setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "bash",
                "-c",
                shell,
            ])
            .output()
            .expect("run setpriv")
            .status
            .success()
    };
    let tcp = as_uid(&format!(
        "exec 3<>/dev/tcp/{ip}/{HONEYPOT_PORT} && printf {tag}-tcp >&3"
    ));
    as_uid(&format!("printf {tag}-udp > /dev/udp/{ip}/{HONEYPOT_PORT}"));
    let dns = as_uid(&format!("getent hosts {tag}-dns.honeypot.test"));
    (tcp, dns)
}

fn nft_table(pair: &NetnsPair) -> String {
    let out =
        run(pair
            .exec(&pair.appliance, "nft")
            .args(["list", "table", "inet", "airlock_egress"]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn service_uid_cannot_connect_out_other_uid_can() {
    require(&["ip", "nft", "setpriv"]);
    let pair = NetnsPair::new();
    let hp = honeypot(&pair);
    let install = |args: &[&str]| {
        run(pair.exec(&pair.appliance, "bash").arg(script()).args(args));
    };
    install(&["--user", SERVICE_UID]);
    // Idempotent (here in the form install.sh --firewall uses): still one table.
    install(&["apply", SERVICE_UID]);
    let table = nft_table(&pair);
    assert_eq!(
        table.matches("table inet airlock_egress").count(),
        1,
        "{table}"
    );
    assert_eq!(table.matches("meta skuid 64321").count(), 3, "{table}");
    assert!(
        table.contains("packets 0 "),
        "canary counter starts at 0: {table}"
    );

    let (tcp, dns) = attempt(&pair, SERVICE_UID, "blocked");
    assert!(!tcp && !dns, "service uid got out: tcp={tcp} dns={dns}");
    let (tcp, dns) = attempt(&pair, OTHER_UID, "allowed");
    assert!(tcp && dns, "other uid blocked: tcp={tcp} dns={dns}");

    let hits = hits(&hp);
    assert!(
        hits.iter().all(|h| !h.contains("blocked")),
        "the service uid reached the honeypot: {hits:?}"
    );
    for kind in ["tcp", "udp", "dns"] {
        assert!(
            hits.iter()
                .any(|h| h.starts_with(&format!("HIT {kind} ")) && h.contains("allowed")),
            "no {kind} hit from the other uid: {hits:?}"
        );
    }
    let table = nft_table(&pair);
    assert!(
        !table.contains("packets 0 "),
        "the counter saw the refused packets: {table}"
    );

    run(pair
        .exec(&pair.appliance, "bash")
        .arg(script())
        .arg("--remove"));
    let listed = Command::new("ip")
        .args(["netns", "exec", &pair.appliance, "nft", "list", "tables"])
        .output()
        .expect("nft list tables");
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("airlock_egress"));
    let (tcp, _) = attempt(&pair, SERVICE_UID, "unblocked");
    assert!(
        tcp,
        "without the table the same uid connects (the rule was the cause)"
    );
}

#[test]
fn service_as_that_uid_serves_and_the_canary_stays_zero() {
    require(&["ip", "nft", "setpriv"]);
    let pair = NetnsPair::new();
    run(pair
        .exec(&pair.appliance, "bash")
        .arg(script())
        .args(["apply", SERVICE_UID]));
    let dir = service::fixture(pair.appliance_ip, "");
    run(Command::new("chown")
        .args(["-R", &format!("{SERVICE_UID}:{SERVICE_UID}")])
        .arg(dir.path()));
    let mut server = Watched::spawn(
        pair.exec(&pair.appliance, "setpriv")
            .args([
                &format!("--reuid={SERVICE_UID}"),
                &format!("--regid={SERVICE_UID}"),
                "--clear-groups",
                service::BIN,
                "serve",
                "--config",
            ])
            .arg(dir.path().join("airlock.toml"))
            .env("AIRLOCK_LOG", "info"),
    );
    server.wait_for("starting service", Duration::from_secs(60));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).expect("status");
    assert!(
        status.contains(&format!("Uid:\t{SERVICE_UID}\t")) && status.contains("Name:\tairlock"),
        "airlock runs as the service uid: {status}"
    );
    let results = service::clients(&pair, &dir.path().join("pki"));
    assert!(
        service::client(&results, "user_healthz").starts_with("status=200 "),
        "answers to clients are established traffic: {results:?}"
    );
    let table = nft_table(&pair);
    assert!(
        table.contains("packets 0 bytes 0"),
        "the service tried to get out: {table}"
    );
}
