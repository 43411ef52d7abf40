//! The real `airlock serve`, with a real dev PKI, in the `appliance` namespace: mTLS
//! clients in `outside` are served (no-cert and foreign-CA clients refused), while every
//! thread of the process has seccomp mode 2 and, asked through gdb to open a TCP, UDP or
//! IPv6 socket, to connect or to set up io_uring, gets EPERM, and its DNS lookup (through
//! the honeypot's resolver) fails. The honeypot in `outside` hears nothing. Control: the same service with `lockdown = "off"` is not ready and its
//! threads can open sockets and resolve through the honeypot (so the gdb probe can fail). Socket-activated in a
//! loopback-only namespace (what `airlock.socket` + `PrivateNetwork=yes` give), `/readyz`
//! says so.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::netns::{LoneNetns, NetnsPair};
use crate::probe::{hits, honeypot};
use crate::roles;
use crate::util::{Watched, require, run};

pub const BIN: &str = env!("CARGO_BIN_EXE_airlock");
pub const PORT: u16 = 8443;

/// A dev PKI and a policy listening on `ip`.
pub fn fixture(ip: std::net::Ipv4Addr, egress: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    run(Command::new(BIN)
        .args(["pki", "dev", "--out"])
        .arg(&pki)
        .env_remove("AIRLOCK_CONFIG"));
    let policy = format!(
        "state_dir = \"state\"\n\
         [server]\nlisten = [\"{}:{PORT}\"]\nshutdown_grace_secs = 1\n\
         [tls]\ncert = \"pki/server.crt\"\nkey = \"pki/server.key\"\nclient_ca = [\"pki/ca.crt\"]\n\
         {egress}\n\
         [[identity]]\nroles = [\"user\"]\nmatch = {{ cn = \"user\" }}\n\
         [[identity]]\nroles = [\"auditor\"]\nmatch = {{ cn = \"auditor\" }}\n",
        ip
    );
    std::fs::write(dir.path().join("airlock.toml"), policy).expect("policy");
    dir
}

fn serve(pair: &NetnsPair, dir: &Path) -> Watched {
    let mut server = Watched::spawn(
        pair.exec(&pair.appliance, BIN)
            .args(["serve", "--config"])
            .arg(dir.join("airlock.toml"))
            .env("AIRLOCK_LOG", "info")
            .env_remove("RUST_BACKTRACE"),
    );
    server.wait_for("starting service", Duration::from_secs(60));
    // `ip netns exec` execs the program: the child's pid is airlock's.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", server.child.id())).expect("comm");
    assert_eq!(comm.trim(), "airlock");
    server
}

/// `CLIENT name result` lines of the client role run in `outside`.
pub fn clients(pair: &NetnsPair, pki: &Path) -> Vec<(String, String)> {
    clients_in(&pair.outside, pair.appliance_ip, pki)
}

/// `CLIENT name result` lines of the client role run in `ns`, against `ip:PORT`.
fn clients_in(ns: &str, ip: std::net::Ipv4Addr, pki: &Path) -> Vec<(String, String)> {
    let out = run(&mut roles::command(
        ns,
        "client",
        &[
            ("AIRLOCK_CLIENT_PKI", pki.display().to_string()),
            ("AIRLOCK_CLIENT_SERVER", format!("{ip}:{PORT}")),
        ],
    ));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("CLIENT "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, r)| (n.to_owned(), r.to_owned()))
        .collect()
}

pub fn client<'a>(results: &'a [(String, String)], name: &str) -> &'a str {
    results
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| r.as_str())
        .unwrap_or_else(|| panic!("no client result {name}: {results:?}"))
}

fn readyz_egress(results: &[(String, String)]) -> serde_json::Value {
    let r = client(results, "user_readyz");
    let body = r.split_once("body=").map_or("", |(_, b)| b);
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("readyz body {r}: {e}"));
    v["components"]["egress"].clone()
}

/// `Seccomp:` and `Name:` of every thread of `pid` (as `"2 actix-rt|system"`), by id.
fn seccomp_modes(pid: u32) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .map(|e| {
            let tid = e.expect("entry").file_name().to_string_lossy().into_owned();
            let status =
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).expect("status");
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            (tid, format!("{} {}", field("Seccomp:"), field("Name:")))
        })
        .collect()
}

/// The name each thread looks up through gdb (the namespace's resolver is the honeypot).
const DNS_NAME: &str = "airlock-gdb.honeypot.test";

/// In every thread of `pid`, through gdb: `socket(AF_INET, SOCK_STREAM)`,
/// `socket(AF_INET, SOCK_DGRAM)`, `socket(AF_INET6, SOCK_STREAM)`,
/// `connect(socket(AF_UNIX, SOCK_STREAM), NULL, 0)`, `io_uring_setup(1, NULL)`, each
/// followed by errno, then `getaddrinfo(DNS_NAME, ..)`'s result. Returns (thread id, the ten values) of each thread probed, and the
/// ids of threads that exited meanwhile (an idle blocking-pool thread times out).
fn gdb_probe(pid: u32) -> (Vec<(String, Vec<i64>)>, Vec<String>) {
    let script = tempfile::NamedTempFile::new().expect("script");
    let errno = "p ((int*(*)(void))__errno_location)()[0]";
    let sock = "((int(*)(int,int,int))socket)";
    let text = format!(
        "set language c\nset pagination off\nset confirm off\n\
         define airlock_probe\n\
         p {sock}(2,1,0)\n{errno}\n\
         p {sock}(2,2,0)\n{errno}\n\
         p {sock}(10,1,0)\n{errno}\n\
         p ((int(*)(int,const void*,int))connect)({sock}(1,1,0),0,0)\n{errno}\n\
         p ((long(*)(long,long,long))syscall)(425,1,0)\n{errno}\n\
         p ((int(*)(const char*,const char*,const void*,void**))getaddrinfo)\
         (\"{DNS_NAME}\",(char*)0,(void*)0,(void**)malloc(8))\n\
         end\n\
         thread apply all airlock_probe\n"
    );
    std::fs::write(script.path(), text).expect("write script");
    let out = Command::new("gdb")
        .args(["-batch", "-nx", "-p", &pid.to_string(), "-x"])
        .arg(script.path())
        .output()
        .expect("run gdb");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut threads: Vec<(String, Vec<i64>)> = Vec::new();
    let mut exited = Vec::new();
    let lwp = |line: &str| {
        line.split("(LWP ")
            .nth(1)
            .map(|rest| rest.split(')').next().unwrap_or_default().to_owned())
    };
    for line in stdout.lines() {
        if line.starts_with('[') {
            // "[Thread 0x... (LWP n) exited]", "[New LWP n]": not a probe header.
            if line.ends_with(" exited]") {
                exited.extend(lwp(line));
            }
        } else if line.starts_with("Thread ")
            && let Some(tid) = lwp(line)
        {
            threads.push((tid, Vec::new()));
        } else if let (Some((_, v)), Some(cur)) = (line.split_once(" = "), threads.last_mut())
            && line.starts_with('$')
        {
            cur.1.push(v.trim().parse().unwrap_or(i64::MIN));
        }
    }
    assert!(
        !threads.is_empty()
            && threads
                .iter()
                .all(|(t, v)| v.len() == 11 || exited.contains(t)),
        "unexpected gdb output:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    threads.retain(|(t, _)| !exited.contains(t));
    (threads, exited)
}

#[test]
fn locked_down_service_serves_outside_clients_and_reaches_nothing() {
    require(&["ip", "gdb"]);
    let pair = NetnsPair::new();
    let hp = honeypot(&pair);
    // No [egress] section: enforce is the default.
    let dir = fixture(pair.appliance_ip, "");
    let mut server = serve(&pair, dir.path());
    server.wait_for("egress lockdown complete", Duration::from_secs(5));
    let pid = server.child.id();

    let results = clients(&pair, &dir.path().join("pki"));
    assert!(
        client(&results, "user_healthz").starts_with("status=200 "),
        "{results:?}"
    );
    assert!(
        client(&results, "auditor_checkpoint").starts_with("status=200 "),
        "{results:?}"
    );
    let egress = readyz_egress(&results);
    assert_eq!(egress["ready"], true, "{egress}");
    let detail = egress["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with("lockdown=enforce landlock=enforced(abi=")
            && detail.contains(&format!("bind=[{PORT}]"))
            && detail.contains("seccomp=all_threads"),
        "{detail}"
    );
    for refused in ["nocert", "foreign"] {
        assert!(
            client(&results, refused).starts_with("refused("),
            "{refused}: {results:?}"
        );
    }

    let modes = seccomp_modes(pid);
    assert!(modes.len() >= 3, "main, arbiter and workers: {modes:?}");
    assert!(
        modes.iter().any(|(_, m)| m.ends_with(" tokio-rt-worker")),
        "a blocking-pool thread is up (the auditor request used one): {modes:?}"
    );
    for (tid, mode) in &modes {
        assert!(
            mode.starts_with("2 "),
            "thread {tid} without seccomp filter: {modes:?}"
        );
    }

    // gdb loads symbols for seconds before it attaches: meanwhile, use the blocking pool
    // again so that its thread (idle ones exit after 10 s) is there to be probed.
    let pki = dir.path().join("pki");
    let (probed, exited) = std::thread::scope(|s| {
        let poke = s.spawn(|| {
            std::thread::sleep(Duration::from_secs(1));
            clients(&pair, &pki)
        });
        let probed = gdb_probe(pid);
        let poked = poke.join().expect("client thread");
        assert!(
            client(&poked, "auditor_checkpoint").starts_with("status=200 "),
            "{poked:?}"
        );
        probed
    });
    println!("threads: {modes:?}\ngdb: {probed:?} exited: {exited:?}\nreadyz: {egress}");
    for (tid, _) in &modes {
        assert!(
            probed.iter().any(|(t, _)| t == tid) || exited.contains(tid),
            "gdb did not probe thread {tid}: {probed:?}"
        );
    }
    assert!(probed.len() >= 3, "{probed:?}");
    for (tid, v) in &probed {
        // Each call returns -1 with errno EPERM (1); the DNS lookup fails.
        assert_eq!(v[..10], [-1, 1, -1, 1, -1, 1, -1, 1, -1, 1], "thread {tid}");
        assert_ne!(v[10], 0, "getaddrinfo succeeded in thread {tid}");
    }

    // The state dir stayed writable: the JSON log has the requests.
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("state/logs"))
        .expect("logs dir")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("log"))
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("/v1/audit/checkpoint")),
        "request logged under lockdown: {logs:?}"
    );

    // The service still serves after being poked, and nothing reached the honeypot.
    let again = clients(&pair, &dir.path().join("pki"));
    assert!(
        client(&again, "user_healthz").starts_with("status=200 "),
        "{again:?}"
    );
    assert_eq!(hits(&hp), Vec::<String>::new());
}

#[test]
fn lockdown_off_is_not_ready_warns_and_threads_can_open_sockets() {
    require(&["ip", "gdb"]);
    let pair = NetnsPair::new();
    let hp = honeypot(&pair);
    let dir = fixture(pair.appliance_ip, "[egress]\nlockdown = \"off\"\n");
    let server = serve(&pair, dir.path());
    let pid = server.child.id();
    assert!(
        server
            .lines()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("egress lockdown is OFF")),
        "{:?}",
        server.lines()
    );

    let results = clients(&pair, &dir.path().join("pki"));
    assert!(
        client(&results, "user_healthz").starts_with("status=200 "),
        "{results:?}"
    );
    let egress = readyz_egress(&results);
    assert_eq!(egress["ready"], false, "{egress}");
    assert!(
        egress["detail"].as_str().is_some_and(
            |d| d.starts_with("lockdown=off landlock=not_applied seccomp=not_installed")
        ),
        "{egress}"
    );
    for (tid, mode) in seccomp_modes(pid) {
        assert!(mode.starts_with("0 "), "thread {tid}: {mode}");
    }
    // The same gdb probe, without the filter: sockets are created.
    let (probed, _) = gdb_probe(pid);
    assert!(!probed.is_empty());
    for (tid, v) in &probed {
        assert!(v[0] >= 0 && v[2] >= 0 && v[4] >= 0, "thread {tid}: {v:?}");
        assert_ne!(
            v[9], 1,
            "io_uring_setup(1, NULL) fails with EFAULT, not EPERM: {v:?}"
        );
        assert_eq!(v[10], 0, "getaddrinfo through the honeypot resolver: {v:?}");
    }
    let dns = hits(&hp)
        .into_iter()
        .filter(|h| h.starts_with("HIT dns ") && h.contains(DNS_NAME))
        .count();
    assert!(dns >= probed.len(), "one lookup per thread at least: {dns}");
}

#[test]
fn socket_activated_in_a_loopback_only_namespace_reports_both() {
    // What systemd gives the service (airlock.socket + PrivateNetwork=yes), without
    // systemd: a namespace with only `lo`, and the listener passed as fd 3.
    require(&["ip", "systemd-socket-activate"]);
    let ns = LoneNetns::new();
    let dir = fixture(std::net::Ipv4Addr::LOCALHOST, "");
    let mut server = Watched::spawn(
        crate::netns::exec(&ns.name, "systemd-socket-activate")
            .args([
                "-l",
                &format!("127.0.0.1:{PORT}"),
                "-E",
                "AIRLOCK_LOG=info",
                BIN,
            ])
            .args(["serve", "--config"])
            .arg(dir.path().join("airlock.toml")),
    );
    server.wait_for("Listening on", Duration::from_secs(30));
    // The first connection starts the service, which takes the socket over.
    let results = clients_in(
        &ns.name,
        std::net::Ipv4Addr::LOCALHOST,
        &dir.path().join("pki"),
    );
    assert!(
        client(&results, "user_healthz").starts_with("status=200 "),
        "{results:?}\n{}",
        server.lines().join("\n")
    );
    let egress = readyz_egress(&results);
    assert_eq!(egress["ready"], true, "{egress}");
    let detail = egress["detail"].as_str().expect("detail");
    assert!(
        detail.ends_with("seccomp=all_threads socket_activation=yes private_network=yes"),
        "{detail}"
    );
}

#[test]
fn enforce_without_landlock_refuses_to_start() {
    // The kernel lacks Landlock (simulated: its calls return ENOSYS) and the policy says
    // enforce (the default): the service must not start, with one line saying why.
    let dir = fixture(std::net::Ipv4Addr::LOCALHOST, "");
    let out = roles::command_here(
        "exec-without-landlock",
        &[
            ("AIRLOCK_EXEC_BIN", BIN.to_owned()),
            (
                "AIRLOCK_EXEC_CONFIG",
                dir.path().join("airlock.toml").display().to_string(),
            ),
        ],
    )
    .env_remove("RUST_BACKTRACE")
    .output()
    .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "airlock: Landlock is required by egress.lockdown = \"enforce\" but unavailable: \
             no Landlock ABI V4 in this kernel"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("starting service"),
        "nothing may be served: {stderr}"
    );
}
