//! The Airlock appliance: CLI, mTLS HTTP service, dev PKI. The `airlock` binary
//! (`main.rs`) only calls [`cli::main`].
//!
//! Start-up is ordered for the egress lockdown (ARCHITECTURE.md §8), see `cli::serve`: parse
//! arguments, load and validate the policy, apply Landlock while the main thread is the
//! only thread ([`lockdown::before_runtime`]), take the listeners ([`listeners::acquire`]),
//! load the TLS material ([`server::tls::server_config`]), open the audit log and load the
//! active models, install seccomp on every thread ([`lockdown::after_listening`]), tell
//! systemd `READY=1`, and only then build the async runtime ([`server::run`]).
//!
//! Exit codes: 0 success; 1 runtime failure; 64 invalid command line or configuration
//! (policy file, TLS material). Errors are one line on stderr (`airlock: ...`); set
//! `RUST_BACKTRACE=1` for a backtrace.
#![deny(unsafe_code)]

pub mod audit_log;
pub mod bundles;
pub mod cli;
pub mod error;
pub mod kit;
pub mod listeners;
pub mod lockdown;
pub mod logging;
pub mod notify;
pub mod pki;
pub mod scheduler;
pub mod server;
