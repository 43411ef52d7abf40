//! seccomp: refuse, on every thread, the system calls that could open a path out.
//!
//! A deny-list filter (everything else allowed), installed with `TSYNC` so that it binds
//! every thread of the process at once and, by inheritance, every thread created later:
//! - `socket(family, ..)` with `family != AF_UNIX` → `EPERM`: no TCP, UDP (so no DNS),
//!   ICMP, raw, netlink or packet socket can be created;
//! - `connect()` → `EPERM`, for every family (no reaching a local resolver or proxy over
//!   a UNIX socket either);
//! - `io_uring_setup`, `io_uring_enter`, `io_uring_register` → `EPERM`: io_uring performs
//!   socket operations without passing through the seccomp-filtered system calls.
//!
//! Sockets that already exist (the bound listeners) keep working: `accept()` and I/O on
//! accepted connections are not filtered.
//!
//! On x86_64 the same calls are also refused under their x32 numbers (`nr | 0x4000_0000`),
//! which report the same audit architecture; any other architecture (e.g. 32-bit
//! `int 0x80` calls, `socketcall`) fails seccompiler's architecture check, which kills the
//! process.
use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::SeccompLayer;
use crate::error::LockdownError;

/// What the filter refuses, as reported by [`SeccompLayer::AllThreads`].
pub const DENIED: [&str; 5] = [
    "socket(family != AF_UNIX)",
    "connect",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

/// x32 system calls are the x86_64 numbers with this bit set (`__X32_SYSCALL_BIT`).
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: i64 = 0x4000_0000;

/// The BPF program, for inspection or installation.
pub fn filter() -> Result<BpfProgram, LockdownError> {
    let build = |e: seccompiler::BackendError| LockdownError::SeccompBuild(e.to_string());
    let not_unix = SeccompRule::new(vec![
        SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            libc::AF_UNIX as u64,
        )
        .map_err(build)?,
    ])
    .map_err(build)?;
    // An empty rule list matches every call of that system call.
    let numbers: [(i64, Vec<SeccompRule>); 5] = [
        (libc::SYS_socket, vec![not_unix]),
        (libc::SYS_connect, vec![]),
        (libc::SYS_io_uring_setup, vec![]),
        (libc::SYS_io_uring_enter, vec![]),
        (libc::SYS_io_uring_register, vec![]),
    ];
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, r) in numbers {
        #[cfg(target_arch = "x86_64")]
        rules.insert(nr | X32_SYSCALL_BIT, r.clone());
        rules.insert(nr, r);
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(build)?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(build)?;
    BpfProgram::try_from(filter).map_err(build)
}

/// Installs [`filter`] on every thread of the process (`SECCOMP_FILTER_FLAG_TSYNC`).
/// Also sets `no_new_privs`. Irreversible for the life of the process.
pub fn install_all_threads() -> Result<SeccompLayer, LockdownError> {
    let program = filter()?;
    seccompiler::apply_filter_all_threads(&program)
        .map_err(|e| LockdownError::SeccompInstall(e.to_string()))?;
    Ok(SeccompLayer::AllThreads {
        denied: DENIED.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    //! The filter binds the whole process, so it is installed in a child: this test binary
    //! re-executed to run only [`child_installs_and_probes`], which prints its findings.
    //! io_uring cannot be called without unsafe code here; the appliance's egress test
    //! calls it in the real service (`tests/egress/threads.rs`).
    use std::io::ErrorKind;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::unix::net::{UnixDatagram, UnixStream};
    use std::process::Command;

    use super::*;

    const CHILD_ENV: &str = "AIRLOCK_SECCOMP_TEST_CHILD";

    fn outcome<T>(r: std::io::Result<T>) -> String {
        match r {
            Ok(_) => "ok".to_owned(),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => "EPERM".to_owned(),
            Err(e) => format!("error {e}"),
        }
    }

    /// Runs only in the child (see the module doc); ignored in a normal run.
    #[test]
    #[ignore = "runs in a child process started by filter_refuses_network_on_every_thread"]
    fn child_installs_and_probes() {
        let Some(mode) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        // A thread that exists before the filter: TSYNC must reach it.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (back_tx, back_rx) = std::sync::mpsc::channel::<String>();
        let earlier = std::thread::spawn(move || {
            rx.recv().expect("go");
            back_tx
                .send(outcome(UdpSocket::bind("127.0.0.1:0")))
                .expect("send");
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("listener before lockdown");
        let addr = listener.local_addr().expect("addr");
        if mode == "filter" {
            install_all_threads().expect("install");
        }
        tx.send(()).expect("go");
        earlier.join().expect("earlier thread");
        let later = std::thread::spawn(move || outcome(TcpStream::connect(addr)))
            .join()
            .expect("later thread");
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let lines = [
            ("tcp_connect", outcome(TcpStream::connect(addr))),
            ("udp_socket", outcome(UdpSocket::bind("127.0.0.1:0"))),
            (
                "earlier_thread_udp",
                back_rx.recv().expect("earlier result"),
            ),
            ("later_thread_tcp", later),
            ("unix_datagram", outcome(UnixDatagram::unbound())),
            (
                "unix_connect",
                outcome(UnixStream::connect("/nonexistent-sock")),
            ),
            (
                "socketpair_io",
                outcome(std::io::Write::write(&mut &a, b"x")),
            ),
            ("existing_listener", outcome(listener.set_nonblocking(true))),
        ];
        println!();
        for (name, result) in lines {
            println!("PROBE {name}={result}");
        }
    }

    /// Runs the child with `mode` ("filter" or "control") and returns a probe lookup.
    fn run_child(mode: &str) -> impl Fn(&str) -> String {
        let exe = std::env::current_exe().expect("test binary");
        let out = Command::new(exe)
            .args([
                "--exact",
                "lockdown::seccomp::tests::child_installs_and_probes",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, mode)
            .output()
            .expect("run child");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        move |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("PROBE {name}=")))
                .unwrap_or_else(|| panic!("no {name} in child output: {stdout}"))
                .to_owned()
        }
    }

    #[test]
    fn filter_refuses_network_on_every_thread() {
        let probe = run_child("filter");
        for denied in [
            "tcp_connect",
            "udp_socket",
            "earlier_thread_udp",
            "later_thread_tcp",
            "unix_connect",
        ] {
            assert_eq!(probe(denied), "EPERM", "{denied}");
        }
        for allowed in ["unix_datagram", "socketpair_io", "existing_listener"] {
            assert_eq!(probe(allowed), "ok", "{allowed}");
        }
    }

    #[test]
    fn control_without_filter_reaches_the_listener() {
        let probe = run_child("control");
        for name in [
            "tcp_connect",
            "udp_socket",
            "earlier_thread_udp",
            "later_thread_tcp",
        ] {
            assert_eq!(probe(name), "ok", "{name}");
        }
        assert!(
            probe("unix_connect").starts_with("error"),
            "ENOENT, not EPERM"
        );
    }

    #[test]
    fn filter_compiles_for_this_architecture() {
        let program = filter().expect("filter");
        println!("seccomp program: {} BPF instructions", program.len());
        // Arch check (3) + per-syscall checks + default: a deny-list of 5 calls (10 on
        // x86_64 with x32 aliases) stays small.
        assert!(
            program.len() > 10 && program.len() < 200,
            "{}",
            program.len()
        );
    }
}
