use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::{Fixture, read_response};

#[test]
fn sigterm_drains_an_in_flight_request() {
    let fx = Fixture::new();
    let mut server = fx.serve();
    let user = fx.client(Some("user"));

    // Start a request whose body arrives in two halves, SIGTERM in between.
    let body = br#"{"model":"m","messages":[]}"#;
    let (first, second) = body.split_at(10);
    let mut tls = user.connect().expect("connect");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).expect("head");
    tls.write_all(first).expect("first half");
    tls.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(500));

    let signalled = Instant::now();
    server.terminate();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "exited with a request in flight"
    );
    // The listener is closed: new connections are refused outright.
    let late = std::net::TcpStream::connect(("127.0.0.1", fx.port));
    assert!(late.is_err(), "still accepting connections after SIGTERM");

    tls.write_all(second).expect("second half");
    tls.flush().expect("flush");
    let resp = read_response(&mut tls).expect("the in-flight request completes");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(
        resp.openai_error(),
        "no model is loaded yet (install and activate a bundle)"
    );

    let (status, stderr) = server.wait(Duration::from_secs(15));
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "drained well within the grace"
    );
}
