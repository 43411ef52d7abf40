//! Listening sockets: bound from the policy, or inherited from systemd socket activation.
//!
//! Socket activation (`sd_listen_fds(3)` protocol): when `LISTEN_PID` is this process and
//! `LISTEN_FDS=n`, fds 3..3+n are listening sockets passed by `airlock.socket`; the policy's
//! `server.listen` is then ignored. This lets the service run with `PrivateNetwork=yes`.
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::error::ListenError;

/// First fd passed by systemd (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Where the listeners came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Passed by systemd.
    SocketActivation,
    /// Bound from addresses.
    Bound,
}

/// The listeners to serve on: systemd's if it passed any, else `addrs` bound here.
pub fn acquire(addrs: &[SocketAddr]) -> Result<(Vec<TcpListener>, Origin), ListenError> {
    if let Some(listeners) = from_systemd()? {
        return Ok((listeners, Origin::SocketActivation));
    }
    let listeners = addrs
        .iter()
        .map(|addr| {
            TcpListener::bind(addr).map_err(|source| ListenError::Bind {
                addr: *addr,
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((listeners, Origin::Bound))
}

fn from_systemd() -> Result<Option<Vec<TcpListener>>, ListenError> {
    let (Ok(pid), Ok(fds)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return Ok(None);
    };
    // The variables are meant for one process: a child that inherited them must not take
    // its parent's fds.
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    let n: RawFd = fds
        .trim()
        .parse()
        .map_err(|_| ListenError::Activation(format!("LISTEN_FDS={fds:?} is not a number")))?;
    if !(1..=64).contains(&n) {
        return Err(ListenError::Activation(format!(
            "LISTEN_FDS={n}: expected 1 to 64 sockets"
        )));
    }
    (LISTEN_FDS_START..LISTEN_FDS_START + n)
        .map(|fd| {
            let listener = adopt(fd);
            // A non-socket fd fails here; a non-TCP socket fails on its first accept.
            listener.local_addr().map_err(|e| {
                ListenError::Activation(format!("fd {fd} is not a listening socket: {e}"))
            })?;
            listener
                .set_nonblocking(true)
                .map_err(|e| ListenError::Activation(format!("fd {fd}: {e}")))?;
            Ok(listener)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Takes ownership of an inherited fd.
#[allow(unsafe_code)]
fn adopt(fd: RawFd) -> TcpListener {
    // SAFETY: systemd's protocol passes fds LISTEN_FDS_START..+LISTEN_FDS open to this
    // process (LISTEN_PID checked by the caller). While they are open no other file of
    // this process can have those numbers, and each is adopted exactly once, here, so the
    // OwnedFd is the sole owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    TcpListener::from(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_configured_addresses_without_activation() {
        // LISTEN_PID of another process (or unset) must be ignored: bind instead.
        let (listeners, origin) =
            acquire(&["127.0.0.1:0".parse().expect("addr")]).expect("bind loopback");
        assert_eq!(origin, Origin::Bound);
        assert_eq!(listeners.len(), 1);
    }

    #[test]
    fn bind_error_names_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = acquire(&[addr]).expect_err("in use");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
