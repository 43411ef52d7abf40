//! Deployment tests: the shipped systemd units, `install.sh`, and the TLS configuration as
//! an outside scanner sees it. They run the real tools (systemd-analyze, sslyze, bash, curl)
//! on the repository's own files and the real `airlock` binary, on loopback only. Missing
//! tools fail the test with the command that installs them (`./install.sh --test`).

/// The service tests' fixtures (dev PKI, policy, running server, rustls client).
#[allow(dead_code)]
#[path = "../service/common.rs"]
mod common;
/// Paths and tools shared by these tests.
mod support;

/// `systemd-analyze security --offline=yes`: exposure of airlock.service at most 1.0.
mod exposure;
/// install.sh command line: --help, unknown or misplaced flags give one line and exit 2.
mod install_cli;
/// `./install.sh --dev` twice on the same state dir, checked with the curl it prints.
mod install_dev;
/// The production install staged under DESTDIR: layout, modes, idempotence, uninstall.
mod install_staged;
/// The offline install kit: built, installed in a namespace without network, served; and
/// every tampered kit refused with nothing written.
mod kit;
/// Type=notify: READY=1 at the end of start-up, STOPPING=1 on SIGTERM, over $NOTIFY_SOCKET.
mod notify;
/// The shipped units under the host's real systemd, booted in a throw-away container.
mod nspawn;
/// The real binary, socket-activated under strace, stays inside the unit's syscall filter.
mod sandbox;
/// sslyze against a live `airlock serve`: no weak protocol, suite or curve.
mod sslyze;
/// The units' required hardening directives, each with a comment saying why.
mod unit_contents;
/// `systemd-analyze verify` on the installed units: no output at all.
mod verify;
