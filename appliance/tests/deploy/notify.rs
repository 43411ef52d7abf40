use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Fixture, Server, command};

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The protocol systemd speaks with `Type=notify`: a datagram socket in $NOTIFY_SOCKET,
/// READY=1 when the service accepts connections, STOPPING=1 when SIGTERM starts the drain.
#[test]
fn ready_after_listening_and_stopping_on_sigterm() {
    let fx = Fixture::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let child = command()
        .args(["serve", "--config"])
        .arg(fx.policy())
        .env("NOTIFY_SOCKET", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn airlock serve");
    let mut server = Server { child };

    let ready = receive(&socket);
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=serving on 127.0.0.1:{} (Bound)\n", fx.port)
    );
    // READY=1 promises that connections are accepted from now on.
    TcpStream::connect(("127.0.0.1", fx.port)).expect("listening once READY=1 is sent");
    assert_eq!(fx.client(Some("user")).get("/healthz").status, 200);

    server.terminate();
    let stopping = receive(&socket);
    assert!(
        stopping.starts_with("STOPPING=1\nSTATUS=SIGTERM: draining"),
        "{stopping:?}"
    );
    let (status, stderr) = server.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}: {stderr}");
}

/// Without $NOTIFY_SOCKET (not under systemd) nothing is sent and nothing is logged about it.
#[test]
fn no_notify_socket_no_notification_warning() {
    let fx = Fixture::new();
    let server = fx.serve();
    assert_eq!(fx.client(Some("user")).get("/healthz").status, 200);
    server.terminate();
    let mut server = server;
    let (_, stderr) = server.wait(Duration::from_secs(30));
    assert!(!stderr.contains("cannot notify systemd"), "{stderr}");
}
