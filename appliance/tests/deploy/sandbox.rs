use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{BIN, Fixture, Server, free_port};
use crate::support::{both, repo_file, require_tool};

/// Expands a `SystemCallFilter=` item (`@group` or a call name) to call names, the way
/// systemd does (`systemd-analyze syscall-filter` lists a group's calls and subgroups).
fn expand(item: &str, out: &mut BTreeSet<String>) {
    if !item.starts_with('@') {
        out.insert(item.to_owned());
        return;
    }
    let listing = Command::new("systemd-analyze")
        .args(["syscall-filter", item])
        .output()
        .expect("run systemd-analyze syscall-filter");
    assert!(listing.status.success(), "{}", both(&listing));
    for line in String::from_utf8_lossy(&listing.stdout).lines().skip(1) {
        let word = line.trim();
        if word.is_empty() || word.starts_with('#') {
            continue;
        }
        expand(word, out);
    }
}

/// The calls airlock.service's `SystemCallFilter=` lines allow: the union of the allow
/// lines minus every `~` line (the unit lists its allow line first).
fn allowed_calls() -> BTreeSet<String> {
    let unit = std::fs::read_to_string(repo_file("systemd/airlock.service")).expect("unit");
    let (mut allow, mut deny) = (BTreeSet::new(), BTreeSet::new());
    for value in unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SystemCallFilter="))
    {
        let (set, items) = match value.strip_prefix('~') {
            Some(rest) => (&mut deny, rest),
            None => (&mut allow, value),
        };
        for item in items.split_whitespace() {
            expand(item, set);
        }
    }
    let allowed: BTreeSet<String> = allow.difference(&deny).cloned().collect();
    // What the no-egress layers need and forbid (ARCHITECTURE.md section 8).
    for call in ["accept4", "sendto", "seccomp", "landlock_restrict_self"] {
        assert!(allowed.contains(call), "the unit must allow {call}");
    }
    for call in ["connect", "io_uring_setup", "setuid", "setrlimit"] {
        assert!(!allowed.contains(call), "the unit must refuse {call}");
    }
    allowed
}

/// The pid of the traced process that exec'd `airlock`, once it has.
fn airlock_pid(trace: &str) -> Option<u32> {
    let exec = format!("execve(\"{BIN}\"");
    trace
        .lines()
        .find(|l| l.contains(&exec) && l.ends_with("= 0"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
}

/// Started as airlock.socket starts it (`systemd-socket-activate`: the listening socket as
/// fd 3 with LISTEN_FDS, plus NOTIFY_SOCKET), traced by strace while it serves allowed,
/// forbidden and refused requests and then stops on SIGTERM: every system call the real
/// binary makes passes the unit's `SystemCallFilter=`, it creates no socket but AF_UNIX
/// (`RestrictAddressFamilies=AF_UNIX`) and never calls `connect()`. Without systemd this
/// is the unit's syscall sandbox checked against what the service actually does (on the
/// paths these requests exercise).
#[test]
fn socket_activated_service_stays_inside_the_units_syscall_filter() {
    for tool in ["strace", "systemd-socket-activate", "systemd-analyze"] {
        require_tool(tool);
    }
    let allowed = allowed_calls();
    let fx = Fixture::new();
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let trace_file = dir.path().join("trace");
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let child = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace_file)
        .arg("systemd-socket-activate")
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
        .args([BIN, "serve", "--config"])
        .arg(fx.policy())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strace systemd-socket-activate airlock");
    let mut tracer = Server { child };

    // The first connection makes systemd-socket-activate exec airlock.
    let activated = Fixture::from_dir(fx.dir.path(), port);
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        match activated
            .client(Some("user"))
            .request("GET", "/healthz", None)
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no answer on the activated socket: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(health.status, 200);
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 under strace");
    assert!(
        buf[..n].starts_with(b"READY=1\n"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(
        activated.client(Some("operator")).get("/metrics").status,
        200
    );
    assert_eq!(activated.client(Some("user")).get("/metrics").status, 403);
    // No model installed here: the list is empty (a generation would be 503).
    assert_eq!(activated.client(Some("user")).get("/v1/models").status, 200);
    crate::common::refused_with(&activated.client(None));

    let trace = std::fs::read_to_string(&trace_file).expect("trace");
    let pid = airlock_pid(&trace).expect("airlock was exec'd under strace");
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let (status, stderr) = tracer.wait(Duration::from_secs(60));
    assert!(status.success(), "airlock under strace: {status}\n{stderr}");

    let trace = std::fs::read_to_string(&trace_file).expect("trace");
    let exec = format!("execve(\"{BIN}\"");
    let start = trace.find(&exec).expect("exec line");
    let mut used = BTreeSet::new();
    for line in trace[start..].lines() {
        // "PID name(args..." (also "PID name(... <unfinished ...>"); skip signals, exits
        // and "<... name resumed>" continuations.
        let Some(call) = line
            .split_once(' ')
            .map(|(_, rest)| rest.trim_start())
            .and_then(|rest| rest.split_once('('))
            .map(|(name, _)| name)
            .filter(|name| {
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
            .filter(|name| !name.is_empty())
        else {
            continue;
        };
        used.insert(call.to_owned());
        if call == "socket" || call == "socketpair" {
            assert!(line.contains("(AF_UNIX,"), "a non-AF_UNIX socket: {line}");
        }
    }
    assert!(used.contains("accept4"), "trace has no accept4: {used:?}");
    assert!(!used.contains("connect"), "connect() was called");
    let outside: Vec<&String> = used.difference(&allowed).collect();
    assert!(
        outside.is_empty(),
        "system calls outside airlock.service's SystemCallFilter=: {outside:?}"
    );
    println!(
        "{} distinct system calls, all allowed: {used:?}",
        used.len()
    );
}
