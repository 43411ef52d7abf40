//! A probe process in the `appliance` namespace applies the same `policy::lockdown`
//! functions as the service and tries to reach the honeypot in `outside` over TCP, UDP
//! and DNS from the test thread, a thread created before the lockdown and three created
//! after. Controls: no lockdown (everything gets through), Landlock alone (TCP stopped on
//! the threads it binds, UDP and DNS not: why seccomp is needed).
use std::time::Duration;

use crate::netns::NetnsPair;
use crate::roles;
use crate::util::{Watched, require, run};

const THREADS: [&str; 5] = ["test", "early", "later1", "later2", "later3"];

/// Starts the honeypot in `outside` and waits until it listens.
pub fn honeypot(pair: &NetnsPair) -> Watched {
    let mut hp = Watched::spawn(&mut roles::command(
        &pair.outside,
        "honeypot",
        &[("AIRLOCK_HONEYPOT_IP", pair.outside_ip.to_string())],
    ));
    hp.wait_for("READY", Duration::from_secs(30));
    hp
}

/// The honeypot's `HIT` lines, after giving in-flight datagrams a moment to land.
pub fn hits(hp: &Watched) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(500));
    hp.lines()
        .into_iter()
        .filter(|l| l.starts_with("HIT "))
        .collect()
}

/// Runs the probe in `mode`; returns each thread's `tcp=.. udp=.. dns=..` outcome and the
/// honeypot's hits.
fn run_probe(mode: &str) -> (Vec<(String, String)>, Vec<String>) {
    require(&["ip"]);
    let pair = NetnsPair::new();
    let hp = honeypot(&pair);
    let tag = format!("{mode}{}", std::process::id());
    let out = run(&mut roles::command(
        &pair.appliance,
        "probe",
        &[
            ("AIRLOCK_PROBE_MODE", mode.to_owned()),
            ("AIRLOCK_PROBE_TARGET", pair.outside_ip.to_string()),
            ("AIRLOCK_PROBE_TAG", tag),
        ],
    ));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let probes: Vec<(String, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("PROBE thread="))
        .filter_map(|l| l.split_once(' '))
        .map(|(t, r)| (t.to_owned(), r.to_owned()))
        .collect();
    let names: Vec<&str> = probes.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, THREADS, "probe output: {stdout}");
    let hits = hits(&hp);
    println!("{mode}: {probes:#?}\nhoneypot: {hits:#?}");
    (probes, hits)
}

fn field<'a>(result: &'a str, name: &str) -> &'a str {
    result
        .split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {result}"))
}

#[test]
fn lockdown_refuses_tcp_udp_and_dns_from_every_thread() {
    let (probes, hits) = run_probe("lockdown");
    for (thread, result) in &probes {
        // seccomp refuses the socket itself, before Landlock would see a connect.
        assert_eq!(field(result, "tcp"), "EPERM", "{thread}: {result}");
        assert_eq!(field(result, "udp"), "EPERM", "{thread}: {result}");
        assert!(
            field(result, "dns").starts_with("failed("),
            "{thread}: {result}"
        );
    }
    assert!(hits.is_empty(), "the honeypot was reached: {hits:?}");
}

#[test]
fn control_without_lockdown_reaches_the_honeypot() {
    let (probes, hits) = run_probe("control");
    for (thread, result) in &probes {
        assert_eq!(result, "tcp=ok udp=ok dns=ok", "{thread}");
        for kind in ["tcp", "udp", "dns"] {
            assert!(
                hits.iter().any(|h| h.starts_with(&format!("HIT {kind} "))
                    && payload_label(h).ends_with(&format!("-{thread}"))),
                "no {kind} hit from {thread}: {hits:?}"
            );
        }
    }
}

/// The tag of a `HIT kind peer TAG` line (for DNS, the first label of the name).
fn payload_label(hit: &str) -> &str {
    hit.split(' ')
        .nth(3)
        .and_then(|p| p.split('.').next())
        .unwrap_or_default()
}

#[test]
fn landlock_alone_stops_tcp_on_later_threads_only() {
    let (probes, hits) = run_probe("landlock");
    for (thread, result) in &probes {
        if thread == "early" {
            // Created before the ruleset: not bound by it. Why the service applies
            // Landlock before its runtime starts any thread.
            assert_eq!(field(result, "tcp"), "ok", "{thread}: {result}");
        } else {
            assert_eq!(field(result, "tcp"), "EACCES", "{thread}: {result}");
        }
        // Landlock has no UDP rules: seccomp is the layer that stops these.
        assert_eq!(field(result, "udp"), "ok", "{thread}: {result}");
        assert_eq!(field(result, "dns"), "ok", "{thread}: {result}");
    }
    assert!(hits.iter().any(|h| h.starts_with("HIT udp ")), "{hits:?}");
}
