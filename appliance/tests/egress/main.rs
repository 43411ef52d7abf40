//! Egress tests (ARCHITECTURE.md §8): the real `airlock` in a network namespace serves mTLS
//! clients from another namespace, yet neither it nor a probe applying the same
//! `policy::lockdown` functions can reach that namespace over TCP, UDP or DNS, from any
//! thread. Controls without the lockdown reach it, so each test can fail.
//!
//! Runs as root (CI does): the tests create their own namespaces (`ip netns add`), joined
//! by a veth pair with 10.x addresses that exist only inside them (no default route; the
//! host namespace never sends to 10.x). They need `ip`, `nft`, `gdb`, `setpriv` and
//! `systemd-socket-activate` (`./install.sh --test` installs them) and fail, never skip,
//! without them.
//!
//! This binary also plays the helper roles inside the namespaces (honeypot, probe, mTLS
//! client): [`roles::role`] is re-executed under `ip netns exec`.
mod netns;
mod roles;
mod util;

/// No HTTP client or model-hub crate in the `airlock` binary's dependencies.
mod deps;
/// nftables per-uid reject of `scripts/firewall.sh`, loaded in a test namespace.
mod firewall;
/// A probe applying `policy::lockdown` from several threads, and a control without it.
mod probe;
/// The real `airlock serve` locked down in a namespace; a control with `lockdown = "off"`;
/// socket activation in a loopback-only namespace.
mod service;
