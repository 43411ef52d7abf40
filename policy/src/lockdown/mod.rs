//! Process lockdown: the in-process layers of ARCHITECTURE.md §8 that make egress impossible
//! for the service itself, whatever its code (or a dependency's) tries.
//!
//! # Layers and order
//! 1. [`landlock::apply`] runs in `main()` on the **only** thread, before the async
//!    runtime exists: Landlock rules bind the calling thread and every thread it creates
//!    later, and the kernel this was written for (ABI 7) has no all-threads flag. It denies
//!    TCP `connect` on every port, allows TCP `bind` only on the configured ports, and
//!    makes the file system read-only except the state directory.
//! 2. [`seccomp::install_all_threads`] runs once the listeners are bound and the TLS
//!    material and models are loaded, with `SECCOMP_FILTER_FLAG_TSYNC` so it reaches every
//!    thread that exists by then (and, by inheritance, every later one): `socket()` of any
//!    family but `AF_UNIX`, `connect()` and the `io_uring_*` calls fail with `EPERM`. This
//!    is the layer that stops UDP and DNS, which Landlock does not see.
//!
//! Each step returns its part of a [`LockdownReport`], which the service shows in its
//! start-up log and on `/readyz`.
//!
//! # Unsafe code
//! None here (`#![forbid(unsafe_code)]` holds): Landlock goes through the `landlock`
//! crate, and the one raw `seccomp(2)` call with `TSYNC` is seccompiler's
//! `apply_filter_all_threads`, a safe function around a single syscall.
//!
//! # Non-goals
//! This module does not bind sockets, read policy files or decide *when* to call the
//! layers: the appliance does, in the order above. It does not stop a process that is
//! already allowed to `accept()` from answering on those connections (that is the
//! service), nor egress by a *different* process: that is the host firewall's and
//! systemd's job (`PrivateNetwork=yes`). Landlock does not cover UDP, ICMP or raw sockets;
//! seccomp does, by refusing to create any non-`AF_UNIX` socket.
pub mod landlock;
mod report;
pub mod seccomp;

pub use report::{LandlockLayer, LockdownReport, SeccompLayer};
