//! systemd service notifications (`sd_notify(3)`) for `Type=notify` in airlock.service:
//! `READY=1` at the end of start-up (listeners bound; TLS material, audit log and models
//! loaded; seccomp installed on every thread; sent just before the async runtime starts, see
//! `cli::serve`), `STOPPING=1` when a shutdown signal starts the drain, with a `STATUS=` line
//! for `systemctl status`.
//!
//! Why not the `sd-notify` crate: it `connect()`s a datagram socket to `$NOTIFY_SOCKET`
//! and then sends, and `connect()` is exactly the call the service may not make
//! (airlock.service has `SystemCallFilter=~connect`, and the seccomp layer of ARCHITECTURE.md §8
//! refuses it too). One unconnected `sendto()` carrying the address delivers the same
//! datagram without it, and is the whole protocol: a few lines of std, no `unsafe`.
//!
//! Without `$NOTIFY_SOCKET` (not started by systemd, or another `Type=`) every call does
//! nothing. A failed send is logged, never fatal: the service itself works, and systemd's
//! start timeout reports the missing `READY=1`.
use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Environment variable naming the service manager's notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells the service manager that start-up finished (`READY=1`).
pub fn ready(status: &str) {
    notify(&["READY=1", &status_line(status)]);
}

/// Tells the service manager that the service is shutting down (`STOPPING=1`).
pub fn stopping(status: &str) {
    notify(&["STOPPING=1", &status_line(status)]);
}

/// `STATUS=` with the text on one line (a newline would start another assignment).
fn status_line(status: &str) -> String {
    let one_line: String = status
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("STATUS={one_line}")
}

fn notify(assignments: &[&str]) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    let mut message = assignments.join("\n");
    message.push('\n');
    match send(&socket, message.as_bytes()) {
        Ok(()) => tracing::debug!(message = message.trim_end(), "notified systemd"),
        Err(e) => tracing::warn!(
            socket = %socket.to_string_lossy(),
            "cannot notify systemd ({}): {e}",
            message.lines().next().unwrap_or_default()
        ),
    }
}

/// Sends one datagram to the socket named by a `$NOTIFY_SOCKET` value.
pub fn send(socket: &OsStr, message: &[u8]) -> io::Result<()> {
    let addr = address(socket)?;
    let sent = UnixDatagram::unbound()?.send_to_addr(message, &addr)?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification truncated",
        ))
    }
}

/// `$NOTIFY_SOCKET` is an absolute path, or `@name` for an abstract socket.
fn address(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(socket),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor @abstract",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).expect("bind");
        send(path.as_os_str(), b"READY=1\nSTATUS=ok\n").expect("send");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok\n");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("airlock-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let receiver = UnixDatagram::bind_addr(&addr).expect("bind");
        send(OsStr::new(&format!("@{name}")), b"STOPPING=1\n").expect("send");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }

    #[test]
    fn relative_socket_names_are_refused() {
        let err = send(OsStr::new("run/notify"), b"READY=1\n").expect_err("relative");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(status_line("a\nREADY=1"), "STATUS=a READY=1");
    }
}
