use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::{BIN, airlock};
use crate::support::{both, container_users, production_modes, repo_file, require_tool};

/// uid/gid of `airlock` inside the container (any free system id will do).
const AIRLOCK_ID: u32 = 990;

/// Runs inside the booted container: activates the service through the socket, makes
/// requests, records what systemd and /proc say about the service, stops it, powers off.
const PROBE: &str = r#"#!/bin/sh
exec > /out/probe.log 2>&1
P=/etc/airlock/pki
C="--max-time 5 --cacert $P/ca.crt --resolve localhost:8443:127.0.0.1"
echo "before: $(systemctl is-active airlock.socket) $(systemctl is-active airlock.service)" > /out/before.txt
echo "$(systemctl is-active airlock-firewall.service)" > /out/firewall_active.txt
nft list table inet airlock_egress > /out/firewall.txt 2>&1
i=0
until curl -sS $C --cert $P/user.crt --key $P/user.key https://localhost:8443/healthz > /out/healthz.json; do
  i=$((i+1)); [ $i -ge 20 ] && break; sleep 0.2
done
journalctl -u airlock.socket -u airlock.service --no-pager > /out/journal.txt
curl -s -o /dev/null -w '%{http_code}' $C --cert $P/operator.crt --key $P/operator.key https://localhost:8443/metrics > /out/metrics_operator.txt
curl -s -o /dev/null -w '%{http_code}' $C --cert $P/user.crt --key $P/user.key https://localhost:8443/metrics > /out/metrics_user.txt
curl -sS $C https://localhost:8443/healthz > /out/nocert.txt 2>&1
systemctl show airlock.service -p Type -p ActiveState -p SubState -p StatusText > /out/running.txt
PID=$(systemctl show -p MainPID --value airlock.service)
grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$PID/status > /out/status.txt
echo "$(readlink /proc/$PID/ns/net) $(readlink /proc/1/ns/net)" > /out/netns.txt
cut -d: -f1 /proc/$PID/net/dev | tail -n +3 | tr -d ' ' > /out/links.txt
systemctl stop airlock.service
systemctl show airlock.service -p ActiveState -p Result -p ExecMainStatus > /out/stopped.txt
journalctl -u airlock.socket -u airlock.service --no-pager > /out/journal.txt
systemctl poweroff --no-block
"#;

const PROBE_UNIT: &str = "[Unit]\nDescription=Probe airlock.socket/airlock.service\n\
    After=airlock.socket\nRequires=airlock.socket\n\
    [Service]\nType=oneshot\nExecStart=/probe/probe.sh\n";

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn read(out: &Path, name: &str) -> String {
    std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("probe output {name}: {e}"))
}

/// Boots the host's own systemd in a throw-away container (`systemd-nspawn --volatile=yes
/// --private-network`: tmpfs root, the host's /usr read-only, no network but loopback) with
/// the shipped units, a production-shaped /etc/airlock and the real binary, and checks
/// what only a real systemd can show: socket activation on the first connection,
/// `Type=notify` readiness, the sandbox as applied (airlock user, no capabilities,
/// NoNewPrivs, seccomp, a network namespace with only `lo`), and a clean stop.
#[test]
fn shipped_units_serve_under_real_systemd() {
    if std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout != b"0\n")
        .unwrap_or(true)
    {
        eprintln!(
            "\n*** SKIPPED shipped_units_serve_under_real_systemd: needs root (CI runs as root) ***\n"
        );
        return;
    }
    require_tool("systemd-nspawn");
    require_tool("curl");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = d.join("out");
    std::fs::create_dir_all(&out).expect("mkdir out");

    // /etc/airlock as the production install lays it out: root:airlock, keys 0640.
    let pki = d.join("etc-airlock/pki");
    let made = airlock(&["pki", "dev", "--out", pki.to_str().expect("utf-8")]);
    assert!(made.status.success(), "{}", both(&made));
    let policy = d.join("etc-airlock/airlock.toml");
    write(
        &policy,
        "state_dir = \"/var/lib/airlock\"\n[tls]\ncert = \"pki/server.crt\"\nkey = \"pki/server.key\"\n\
         client_ca = [\"pki/ca.crt\"]\n\
         [[identity]]\nroles = [\"user\"]\nmatch = { cn = \"user\" }\n\
         [[identity]]\nroles = [\"operator\"]\nmatch = { cn = \"operator\" }\n",
        0o640,
    );
    production_modes(&d.join("etc-airlock"), AIRLOCK_ID);
    // The container's /etc is empty (volatile): users come from these files.
    container_users(d, AIRLOCK_ID);
    std::fs::create_dir_all(d.join("lib/airlock")).expect("mkdir lib");
    std::fs::copy(
        repo_file("scripts/firewall.sh"),
        d.join("lib/airlock/firewall.sh"),
    )
    .expect("copy firewall.sh");
    std::fs::create_dir_all(d.join("bin")).expect("mkdir bin");
    std::fs::copy(BIN, d.join("bin/airlock")).expect("copy binary");
    write(&d.join("probe/probe.sh"), PROBE, 0o755);
    write(&d.join("airlock-probe.service"), PROBE_UNIT, 0o644);
    for (wants, unit) in [
        ("sockets.target.wants", "airlock.socket"),
        ("multi-user.target.wants", "airlock-probe.service"),
        ("multi-user.target.wants", "airlock-firewall.service"),
    ] {
        std::fs::create_dir_all(d.join(wants)).expect("mkdir wants");
        std::os::unix::fs::symlink(
            format!("/etc/systemd/system/{unit}"),
            d.join(wants).join(unit),
        )
        .expect("symlink");
    }

    let p = |rel: &str| d.join(rel).display().to_string();
    let unit = |name: &str| repo_file(&format!("systemd/{name}")).display().to_string();
    let binds = [
        (unit("airlock.socket"), "/etc/systemd/system/airlock.socket"),
        (
            unit("airlock.service"),
            "/etc/systemd/system/airlock.service",
        ),
        (
            unit("airlock-firewall.service"),
            "/etc/systemd/system/airlock-firewall.service",
        ),
        (
            p("airlock-probe.service"),
            "/etc/systemd/system/airlock-probe.service",
        ),
        (
            p("sockets.target.wants"),
            "/etc/systemd/system/sockets.target.wants",
        ),
        (
            p("multi-user.target.wants"),
            "/etc/systemd/system/multi-user.target.wants",
        ),
        // The host's nftables.conf is not there; do not even try to load one.
        (
            "/dev/null".to_owned(),
            "/etc/systemd/system/nftables.service",
        ),
        (p("passwd"), "/etc/passwd"),
        (p("group"), "/etc/group"),
        (p("etc-airlock"), "/etc/airlock"),
        (p("bin"), "/usr/local/bin"),
        (p("lib"), "/usr/local/lib"),
        (p("probe"), "/probe"),
    ];
    let mut cmd = Command::new("timeout");
    cmd.args([
        "180",
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
    // A unique name: nspawn keeps per-machine state under /run/systemd/nspawn/.
    .arg(format!("--machine=airlock-test-{}", std::process::id()))
    // nspawn's own container filter (systemd 252) refuses the Landlock calls with EPERM;
    // on a host they are only subject to the unit's SystemCallFilter=, which allows them.
    .arg("--system-call-filter=landlock_create_ruleset landlock_add_rule landlock_restrict_self");
    for (src, dst) in &binds {
        cmd.arg(format!("--bind-ro={src}:{dst}"));
    }
    cmd.arg(format!("--bind={}:/out", out.display()))
        .arg("systemd.firstboot=off")
        .stdin(std::process::Stdio::null());
    let boot = cmd.output().expect("run systemd-nspawn");
    let journal = std::fs::read_to_string(out.join("journal.txt")).unwrap_or_default();
    let probe_log = std::fs::read_to_string(out.join("probe.log")).unwrap_or_default();
    assert!(
        out.join("stopped.txt").exists(),
        "the probe did not finish: {}\nprobe:\n{probe_log}\njournal:\n{journal}",
        both(&boot)
    );

    // The host firewall unit loaded its table at boot, for the airlock uid, before the socket
    // (inside the container's own network namespace here).
    assert_eq!(
        read(&out, "firewall_active.txt").trim(),
        "active",
        "{journal}"
    );
    let table = read(&out, "firewall.txt");
    assert!(
        table.contains(&format!(
            "meta skuid {AIRLOCK_ID} ct state established,related accept"
        )),
        "{table}"
    );
    // Socket activation: the socket listened, the service started on the first connection.
    assert_eq!(read(&out, "before.txt").trim(), "before: active inactive");
    let health: serde_json::Value = serde_json::from_str(&read(&out, "healthz.json"))
        .unwrap_or_else(|e| panic!("healthz: {e}\nprobe:\n{probe_log}\njournal:\n{journal}"));
    assert_eq!(
        health["identity"]["roles"],
        serde_json::json!(["user"]),
        "{journal}"
    );
    assert_eq!(read(&out, "metrics_operator.txt"), "200");
    assert_eq!(read(&out, "metrics_user.txt"), "403");
    assert!(
        read(&out, "nocert.txt").contains("certificate required"),
        "{}",
        read(&out, "nocert.txt")
    );
    // Type=notify: "active (running)" only after READY=1, with our STATUS= text.
    let running = read(&out, "running.txt");
    for line in [
        "Type=notify",
        "ActiveState=active",
        "SubState=running",
        "StatusText=serving on [::]:8443 (SocketActivation)",
    ] {
        assert!(
            running.lines().any(|l| l == line),
            "{line} not in:\n{running}"
        );
    }
    // The sandbox as the kernel reports it for the service's main process.
    let status = read(&out, "status.txt");
    for line in [
        format!("Uid:\t{AIRLOCK_ID}\t{AIRLOCK_ID}\t{AIRLOCK_ID}\t{AIRLOCK_ID}"),
        "CapEff:\t0000000000000000".to_owned(),
        "CapBnd:\t0000000000000000".to_owned(),
        "NoNewPrivs:\t1".to_owned(),
        "Seccomp:\t2".to_owned(),
    ] {
        assert!(
            status.lines().any(|l| l == line),
            "{line:?} not in:\n{status}"
        );
    }
    let netns = read(&out, "netns.txt");
    let (service, init) = netns.trim().split_once(' ').expect("two namespaces");
    assert_ne!(
        service, init,
        "PrivateNetwork=yes: a network namespace of its own"
    );
    assert_eq!(read(&out, "links.txt").trim(), "lo", "only loopback inside");
    // The service's own no-egress layers (ARCHITECTURE.md section 8) come up inside the unit's
    // sandbox: its SystemCallFilter= lets the Landlock and seccomp calls through.
    let layers = journal
        .lines()
        .find(|l| l.contains("egress lockdown complete"))
        .unwrap_or_else(|| panic!("no lockdown report in the journal:\n{journal}"));
    for layer in [
        "landlock=enforced",
        "seccomp=all_threads",
        "socket_activation=yes",
        "private_network=yes",
    ] {
        assert!(layers.contains(layer), "{layer} not in {layers}");
    }
    let stopped = read(&out, "stopped.txt");
    for line in ["ActiveState=inactive", "Result=success", "ExecMainStatus=0"] {
        assert!(
            stopped.lines().any(|l| l == line),
            "{line} not in:\n{stopped}"
        );
    }
    println!("{running}{status}{netns}{journal}");
}
