//! The helper roles this test binary plays inside a namespace, selected by
//! `AIRLOCK_EGRESS_ROLE` when [`role`] is re-executed through [`command`]:
//! - `honeypot` (outside): TCP and UDP listeners on port [`HONEYPOT_PORT`] and a DNS-like
//!   responder on UDP 53 answering every A query with its own address; prints a `HIT`
//!   line per connection, datagram or query, and `READY` once bound.
//! - `probe` (appliance): optionally applies `policy::lockdown` (`AIRLOCK_PROBE_MODE` =
//!   `lockdown`, `landlock` or `control`), then tries TCP connect, UDP send and a DNS
//!   lookup (getaddrinfo, through the namespace's resolv.conf) from the test thread, a
//!   thread created before the lockdown and threads created after; prints one `PROBE`
//!   line per thread.
//! - `client` (outside): mTLS requests to the service with the user, no and a foreign-CA
//!   certificate; prints `CLIENT` lines.
//! - `exec-without-landlock` (anywhere): hides Landlock from the process, then execs
//!   `airlock serve`.
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Port of the TCP and UDP honeypots.
pub const HONEYPOT_PORT: u16 = 7777;
const ROLE_ENV: &str = "AIRLOCK_EGRESS_ROLE";

/// This test binary, re-executed in namespace `ns` to play `role` (extra settings
/// through `env`).
pub fn command(ns: &str, role: &str, env: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = crate::netns::exec(ns, exe.to_str().expect("utf-8 path"));
    cmd.args([
        "--exact",
        "roles::role",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE_ENV, role);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// This test binary, re-executed in the current namespace to play `role`.
pub fn command_here(role: &str, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "roles::role",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE_ENV, role);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The entry point of every role; does nothing in a normal test run.
#[test]
#[ignore = "a helper role, re-executed by the egress tests inside a namespace"]
fn role() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    println!();
    match role.as_str() {
        "honeypot" => honeypot(var("AIRLOCK_HONEYPOT_IP").parse().expect("ip")),
        "probe" => probe(
            &var("AIRLOCK_PROBE_MODE"),
            var("AIRLOCK_PROBE_TARGET").parse().expect("ip"),
            &var("AIRLOCK_PROBE_TAG"),
        ),
        "exec-without-landlock" => exec_without_landlock(),
        "client" => client(
            Path::new(&var("AIRLOCK_CLIENT_PKI")),
            var("AIRLOCK_CLIENT_SERVER").parse().expect("addr"),
        ),
        other => panic!("unknown role {other}"),
    }
}

/// Makes the kernel look as if it had no Landlock (the three calls fail with ENOSYS, as
/// on a kernel built without it), then execs `AIRLOCK_EXEC_BIN serve --config
/// AIRLOCK_EXEC_CONFIG`. The filter survives exec (no_new_privs is set).
fn exec_without_landlock() {
    use std::os::unix::process::CommandExt;

    use seccompiler::{SeccompAction, SeccompFilter, TargetArch};
    let rules = [
        libc::SYS_landlock_create_ruleset,
        libc::SYS_landlock_add_rule,
        libc::SYS_landlock_restrict_self,
    ]
    .into_iter()
    .map(|nr| (nr, vec![]))
    .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        TargetArch::try_from(std::env::consts::ARCH).expect("arch"),
    )
    .expect("filter");
    let program = seccompiler::BpfProgram::try_from(filter).expect("bpf");
    seccompiler::apply_filter(&program).expect("install");
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let err = Command::new(var("AIRLOCK_EXEC_BIN"))
        .args(["serve", "--config", &var("AIRLOCK_EXEC_CONFIG")])
        .exec();
    panic!("exec failed: {err}");
}

fn honeypot(ip: Ipv4Addr) {
    let tcp = TcpListener::bind((ip, HONEYPOT_PORT)).expect("tcp honeypot");
    let udp = UdpSocket::bind((ip, HONEYPOT_PORT)).expect("udp honeypot");
    let dns = UdpSocket::bind((ip, 53)).expect("dns responder");
    std::thread::spawn(move || {
        for conn in tcp.incoming().map_while(Result::ok) {
            let peer = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let mut data = [0u8; 64];
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let n = (&conn).read(&mut data).unwrap_or(0);
            println!("HIT tcp {peer} {}", String::from_utf8_lossy(&data[..n]));
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = udp.recv_from(&mut buf) {
            println!("HIT udp {peer} {}", String::from_utf8_lossy(&buf[..n]));
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = dns.recv_from(&mut buf) {
            if let Some((name, qtype, answer)) = dns_answer(&buf[..n], ip) {
                println!("HIT dns {peer} {name} type={qtype}");
                let _ = dns.send_to(&answer, peer);
            }
        }
    });
    println!("READY");
    let _ = std::io::stdout().flush();
    // Bounded: the test kills it long before.
    std::thread::sleep(Duration::from_secs(600));
}

/// A DNS response to query `q` (RFC 1035 §4.1): the question echoed and, for type A, one
/// answer with `ip`. Returns the query name and type too.
fn dns_answer(q: &[u8], ip: Ipv4Addr) -> Option<(String, u16, Vec<u8>)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).into_owned());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = q.get(12..i + 4)?;
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(q.get(..2)?); // id
    r.extend_from_slice(&[0x81, 0x80]); // response, RD, RA, NOERROR
    r.extend_from_slice(&[0, 1, 0, u8::from(qtype == 1), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if qtype == 1 {
        // Name pointer to offset 12, type A, class IN, TTL 60, 4 bytes.
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Some((labels.join("."), qtype, r))
}

fn io_outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => match e.raw_os_error() {
            Some(1) => "EPERM".to_owned(),
            Some(13) => "EACCES".to_owned(),
            _ => format!("error({e})"),
        },
    }
}

/// TCP connect + send, UDP send, DNS lookup of `TAG.honeypot.test`, each tagged.
fn probe_once(target: Ipv4Addr, tag: &str) -> String {
    let addr = SocketAddr::from((target, HONEYPOT_PORT));
    let tcp = io_outcome(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .and_then(|mut s| s.write_all(tag.as_bytes())),
    );
    let udp =
        io_outcome(UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(tag.as_bytes(), addr)));
    let dns = match (format!("{tag}.honeypot.test"), 80).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.iter().any(|a| a.ip() == IpAddr::V4(target)) {
                "ok".to_owned()
            } else {
                format!("wrong-answer({addrs:?})")
            }
        }
        Err(e) => format!("failed({e})"),
    };
    format!("tcp={tcp} udp={udp} dns={dns}")
}

fn probe(mode: &str, target: Ipv4Addr, tag: &str) {
    let state = tempfile::tempdir().expect("state dir");
    // A thread that exists before the lockdown: Landlock does not reach it, TSYNC must.
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let early_tag = format!("{tag}-early");
    let early = std::thread::spawn(move || {
        wait.recv().expect("go");
        probe_once(target, &early_tag)
    });
    match mode {
        "control" => {}
        "landlock" => {
            policy::lockdown::landlock::apply(state.path(), &[]).expect("landlock");
        }
        "lockdown" => {
            policy::lockdown::landlock::apply(state.path(), &[]).expect("landlock");
            policy::lockdown::seccomp::install_all_threads().expect("seccomp");
        }
        other => panic!("unknown probe mode {other}"),
    }
    go.send(()).expect("go");
    println!(
        "PROBE thread=test {}",
        probe_once(target, &format!("{tag}-test"))
    );
    println!("PROBE thread=early {}", early.join().expect("early thread"));
    let later: Vec<_> = (1..=3)
        .map(|i| {
            let tag = format!("{tag}-later{i}");
            std::thread::spawn(move || probe_once(target, &tag))
        })
        .collect();
    for (i, t) in later.into_iter().enumerate() {
        println!(
            "PROBE thread=later{} {}",
            i + 1,
            t.join().expect("later thread")
        );
    }
}

fn client(pki: &Path, server: SocketAddr) {
    let cases = [
        ("user_healthz", Some("user"), "/healthz"),
        ("user_readyz", Some("user"), "/readyz"),
        // Served from actix's blocking pool (audit log reads): brings those threads up.
        (
            "auditor_checkpoint",
            Some("auditor"),
            "/v1/audit/checkpoint",
        ),
        ("nocert", None, "/healthz"),
        ("foreign", Some("foreign"), "/healthz"),
    ];
    for (name, cert, path) in cases {
        let result = match get(pki, cert, server, path) {
            Ok((status, body)) => format!("status={status} body={body}"),
            Err(e) => format!("refused({e})"),
        };
        println!("CLIENT {name} {result}");
    }
}

/// One GET over mTLS, trusting the dev CA, presenting `PKI/<cert>.crt` if given.
fn get(
    pki: &Path,
    cert: Option<&str>,
    server: SocketAddr,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.join("ca.crt")).expect("ca"))
        .expect("add ca");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some(n) => {
            let chain =
                vec![CertificateDer::from_pem_file(pki.join(format!("{n}.crt"))).expect("cert")];
            let key = PrivateKeyDer::from_pem_file(pki.join(format!("{n}.key"))).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    };
    let tcp = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("localhost").expect("name");
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text}")))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.replace('\n', " ")))
}
