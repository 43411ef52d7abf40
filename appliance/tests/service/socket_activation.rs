use std::process::{Command, Stdio};

use crate::common::{BIN, Fixture};

/// Binds the socket in a parent that then *execs* airlock (same pid, as systemd's
/// socket units do), passing it as fd 3 with LISTEN_PID/LISTEN_FDS. The policy's listen
/// address is a different, unbound port: serving on the passed socket proves it was used.
#[test]
fn serves_on_the_socket_systemd_passes() {
    let fx = Fixture::new();
    let passed = crate::common::free_port();
    let launcher = format!(
        r#"
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {passed}))
s.listen(16)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
env.pop("RUST_BACKTRACE", None)
os.execve("{BIN}", ["airlock", "serve", "--config", "{policy}"], env)
"#,
        policy = fx.policy().display()
    );
    let child = Command::new("python3")
        .args(["-c", &launcher])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to exec airlock with an inherited socket");
    let mut server = crate::common::Server { child };
    let activated = Fixture::from_dir(fx.dir.path(), passed);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let resp = loop {
        match activated
            .client(Some("user"))
            .request("GET", "/healthz", None)
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no answer on the passed socket: {e}"
                );
                if let Ok(Some(status)) = server.child.try_wait() {
                    panic!(
                        "airlock exited: {status} {:?}",
                        server.wait(std::time::Duration::ZERO).1
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    };
    assert_eq!(resp.status, 200);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", fx.port)).is_err(),
        "the policy's address must not be bound when systemd passes sockets"
    );
}
