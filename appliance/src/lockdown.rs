//! The egress lockdown of the service (ARCHITECTURE.md §8), in the order `cli::serve` calls it:
//!
//! 1. [`before_runtime`]: Landlock, on the main thread while it is the only thread (after
//!    the policy is loaded, before any listener, TLS file or runtime thread exists), so
//!    that every later thread inherits it. Nothing in `main` may spawn a thread before
//!    this call (logging writes synchronously for that reason).
//! 2. [`after_listening`]: seccomp on every thread (TSYNC), once the listeners are bound
//!    and the TLS material, the audit log and the models are loaded (just before
//!    `READY=1`).
//! 3. The server shows the result on `/readyz` ([`Status::report_readiness`]) and, when
//!    the policy says `lockdown = "off"`, warns every minute ([`warn_while_off`]).
//!
//! The layers themselves are `policy::lockdown`'s, so the egress tests' probe applies
//! exactly the same functions.
use std::net::SocketAddr;
use std::time::Duration;

use policy::lockdown::{LockdownReport, landlock, seccomp};
use policy::{Lockdown, Policy};

use crate::error::LockdownError;
use crate::listeners::Origin;
use crate::server::readiness::{Readiness, component};

/// How often a service running with `lockdown = "off"` says so.
pub const OFF_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Applies Landlock when the policy says `enforce` (a hard requirement: an error stops the
/// service). `listen` are the addresses the service will bind: TCP `bind` is allowed on
/// their ports only.
pub fn before_runtime(
    policy: &Policy,
    listen: &[SocketAddr],
) -> Result<LockdownReport, LockdownError> {
    let mode = policy.egress.lockdown;
    let mut report = LockdownReport::new(mode);
    if mode == Lockdown::Off {
        tracing::warn!("{}", off_warning());
        return Ok(report);
    }
    // Landlock binds this thread and its future children only: a thread started earlier
    // (by a dependency, or a future change to `main`) would escape it. Fail closed.
    match thread_count() {
        Some(1) => {}
        n => {
            return Err(LockdownError::Landlock(format!(
                "must be applied while the process has one thread, it has {}: a thread \
                 started before the lockdown would escape it",
                n.map_or_else(|| "an unknown number".to_owned(), |n| n.to_string())
            )));
        }
    }
    let ports: Vec<u16> = listen.iter().map(SocketAddr::port).collect();
    let started = std::time::Instant::now();
    report.landlock = landlock::apply(&policy.state_dir, &ports)?;
    tracing::info!(
        landlock = ?report.landlock,
        micros = started.elapsed().as_micros(),
        "Landlock applied before the runtime"
    );
    Ok(report)
}

/// Installs seccomp on every thread when the policy says `enforce`. Call once listening
/// sockets exist and start-up file loading is done: afterwards no network socket can be
/// created by any thread of this process.
pub fn after_listening(
    mut report: LockdownReport,
    listeners: Origin,
) -> Result<Status, LockdownError> {
    if report.mode == Lockdown::Enforce {
        let started = std::time::Instant::now();
        report.seccomp = seccomp::install_all_threads()?;
        tracing::info!(
            micros = started.elapsed().as_micros(),
            "seccomp filter installed on every thread"
        );
    }
    let status = Status {
        report,
        listeners,
        private_network: private_network(),
    };
    if status.report.is_complete() {
        tracing::info!(layers = %status.detail(), "egress lockdown complete");
    }
    Ok(status)
}

/// The lockdown as the running service sees it: the in-process layers and the evidence
/// of the outer ones that can be seen from inside.
#[derive(Debug, Clone)]
pub struct Status {
    /// Landlock and seccomp.
    pub report: LockdownReport,
    /// Whether systemd passed the listening sockets (socket activation).
    pub listeners: Origin,
    /// Whether the network namespace has no interface but loopback (systemd's
    /// `PrivateNetwork=yes`, or a namespace made for the service).
    pub private_network: bool,
}

impl Status {
    /// One line for the log and `/readyz`, e.g. `lockdown=enforce
    /// landlock=enforced(abi=V6,full,bind=[8443]) seccomp=all_threads
    /// socket_activation=no private_network=no`.
    pub fn detail(&self) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        format!(
            "{} socket_activation={} private_network={}",
            self.report.summary(),
            yes_no(self.listeners == Origin::SocketActivation),
            yes_no(self.private_network),
        )
    }

    /// Registers the `egress` readiness component: ready only when every in-process layer
    /// the policy asks for is in force, never with `lockdown = "off"`.
    pub fn report_readiness(&self, readiness: &Readiness) {
        let handle = readiness.register(component::EGRESS, self.detail());
        if self.report.is_complete() {
            handle.set_ready(self.detail());
        } else {
            handle.set_not_ready(self.detail());
        }
    }
}

fn off_warning() -> &'static str {
    "egress lockdown is OFF (policy egress.lockdown = \"off\"): this process can reach \
     the network; /readyz reports not ready. Use only for debugging."
}

/// Logs the "lockdown is off" warning every [`OFF_WARNING_INTERVAL`], forever. Spawned on
/// the runtime by the server when the lockdown is not complete.
pub async fn warn_while_off(status: Status) {
    warn_every(status, OFF_WARNING_INTERVAL).await;
}

async fn warn_every(status: Status, period: Duration) {
    let mut tick = actix_web::rt::time::interval(period);
    tick.tick().await; // the first tick is immediate; start-up already warned
    loop {
        tick.tick().await;
        tracing::warn!(layers = %status.detail(), "{}", off_warning());
    }
}

/// `Threads:` of `/proc/self/status`.
fn thread_count() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// True when `/proc/self/net/dev` lists no interface but `lo` (read-only, allowed by
/// Landlock; `/proc/net` itself is hidden under systemd's `ProcSubset=pid`).
fn private_network() -> bool {
    std::fs::read_to_string("/proc/self/net/dev").is_ok_and(|text| {
        text.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .all(|name| name.trim() == "lo")
    })
}

#[cfg(test)]
mod tests {
    use policy::lockdown::{LandlockLayer, SeccompLayer};

    use super::*;

    fn status(mode: Lockdown, layers: bool) -> Status {
        let mut report = LockdownReport::new(mode);
        if layers {
            report.landlock = LandlockLayer::Enforced {
                abi: "V7".into(),
                fully: true,
                bind_ports: vec![8443],
                writable: "/var/lib/airlock".into(),
            };
            report.seccomp = SeccompLayer::AllThreads {
                denied: seccomp::DENIED.to_vec(),
            };
        }
        Status {
            report,
            listeners: Origin::SocketActivation,
            private_network: true,
        }
    }

    #[test]
    fn readiness_follows_the_layers() {
        let readiness = Readiness::default();
        status(Lockdown::Enforce, true).report_readiness(&readiness);
        let (ready, map) = readiness.snapshot();
        assert!(ready);
        assert_eq!(
            map[component::EGRESS].detail,
            "lockdown=enforce landlock=enforced(abi=V7,full,bind=[8443]) seccomp=all_threads \
             socket_activation=yes private_network=yes"
        );
        for not_ready in [
            status(Lockdown::Off, false),
            status(Lockdown::Enforce, false),
        ] {
            let readiness = Readiness::default();
            not_ready.report_readiness(&readiness);
            assert!(!readiness.snapshot().0, "{}", not_ready.detail());
        }
    }

    #[test]
    fn enforce_refuses_a_process_that_already_has_threads() {
        // libtest runs this on its own thread beside the main one: two threads at least.
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = Policy::parse(
            "[tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = [\"ca\"]\n",
            &dir.path().join("airlock.toml"),
        )
        .expect("policy");
        let err = before_runtime(&policy, &[]).expect_err("several threads");
        assert!(
            err.to_string()
                .contains("must be applied while the process has one thread"),
            "{err}"
        );
        // Nothing was applied: this thread can still write outside any state dir.
        std::fs::write(dir.path().join("still-writable"), b"x").expect("not landlocked");
    }

    #[test]
    fn off_warns_every_period() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("sink").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        // The System runs on this thread, so this thread's default subscriber sees it.
        tracing::subscriber::with_default(subscriber, || {
            actix_web::rt::System::new().block_on(async {
                let task = actix_web::rt::spawn(warn_every(
                    status(Lockdown::Off, false),
                    Duration::from_millis(40),
                ));
                actix_web::rt::time::sleep(Duration::from_millis(150)).await;
                task.abort();
            });
        });
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
        let warnings = text
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("egress lockdown is OFF"))
            .count();
        assert!(
            (2..=10).contains(&warnings),
            "{warnings} warnings in 150 ms:\n{text}"
        );
        assert!(text.contains("lockdown=off"), "{text}");
    }

    #[test]
    fn off_skips_every_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_path = dir.path().join("airlock.toml");
        let policy = Policy::parse(
            "[tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = [\"ca\"]\n[egress]\nlockdown = \"off\"\n",
            &policy_path,
        )
        .expect("policy");
        // Off must not touch this (multi-threaded) test process.
        let report = before_runtime(&policy, &[]).expect("off");
        let status = after_listening(report, Origin::Bound).expect("off");
        assert_eq!(
            status.report,
            LockdownReport::new(Lockdown::Off),
            "no layer applied"
        );
    }
}
