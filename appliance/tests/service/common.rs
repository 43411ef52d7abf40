//! Shared fixtures: a dev PKI with extra certificates, a policy, a running server, and a
//! minimal HTTP/1.1-over-rustls client.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, Issuer,
    KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::OffsetDateTime;

pub const BIN: &str = env!("CARGO_BIN_EXE_airlock");
/// `limits.max_body_bytes` of the test policy.
pub const MAX_BODY: usize = 1024;
/// Serial number of `revoked.crt`, listed in `crl.pem`.
const REVOKED_SERIAL: [u8; 8] = [0x52, 0x45, 0x56, 0x4f, 0x4b, 0x45, 0x44, 0x01];

/// `airlock` with a clean environment (no backtraces: errors must be one line).
pub fn command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("AIRLOCK_CONFIG")
        .env_remove("RUST_BACKTRACE");
    cmd
}

/// Runs `airlock ARGS` to completion.
pub fn airlock(args: &[&str]) -> Output {
    command().args(args).output().expect("run airlock")
}

/// A temp dir with `pki/` (the `pki dev` files plus `expired`, `revoked`, `stranger`,
/// `admin-pinned` client certificates and `crl.pem`) and `airlock.toml`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with_policy_extra("")
    }

    /// `extra` is appended to the `[tls]` section (e.g. `tls12 = true`).
    pub fn with_policy_extra(extra: &str) -> Fixture {
        Self::with(extra, "")
    }

    /// `tls_extra` goes into `[tls]`, `limits_extra` into `[limits]`.
    pub fn with(extra: &str, limits_extra: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let out = airlock(&["pki", "dev", "--out", pki.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "pki dev: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        extra_certs(&pki);
        let port = free_port();
        let pinned = fingerprint(&pki.join("admin.crt"));
        let policy = format!(
            r#"state_dir = "state"
[server]
listen = ["127.0.0.1:{port}"]
shutdown_grace_secs = 20
[tls]
cert = "pki/server.crt"
key = "pki/server.key"
client_ca = ["pki/ca.crt"]
crl = ["pki/crl.pem"]
{extra}
[limits]
max_body_bytes = {MAX_BODY}
{limits_extra}

[[identity]]
roles = ["user"]
match = {{ cn = "user" }}

[[identity]]
roles = ["operator"]
match = {{ cn = "operator" }}

[[identity]]
name = "admin pinned by fingerprint only"
roles = ["admin"]
match = {{ fingerprint = "{pinned}" }}
"#
        );
        std::fs::write(dir.path().join("airlock.toml"), policy).expect("write policy");
        Fixture { dir, port }
    }

    /// A fixture view of an existing directory holding `pki/` and `airlock.toml`
    /// (e.g. an `airlock dev` state dir), for a server on `port`.
    pub fn from_dir(dir: &Path, port: u16) -> Fixture {
        let copy = tempfile::tempdir().expect("tempdir");
        let pki = copy.path().join("pki");
        std::fs::create_dir_all(&pki).expect("mkdir");
        for entry in std::fs::read_dir(dir.join("pki")).expect("pki dir") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, pki.join(path.file_name().expect("name"))).expect("copy");
        }
        Fixture { dir: copy, port }
    }

    pub fn policy(&self) -> PathBuf {
        self.dir.path().join("airlock.toml")
    }

    pub fn pki(&self, name: &str) -> PathBuf {
        self.dir.path().join("pki").join(name)
    }

    /// Starts `airlock serve` on this fixture and waits until it accepts connections.
    pub fn serve(&self) -> Server {
        let child = command()
            .args(["serve", "--config"])
            .arg(self.policy())
            .env("AIRLOCK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn airlock serve");
        let mut server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = server.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("airlock serve exited early ({status}): {err}");
            }
            assert!(
                Instant::now() < deadline,
                "airlock serve did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// A client presenting `<name>.crt`/`.key` from the fixture's pki (None: no cert).
    pub fn client(&self, name: Option<&str>) -> Client {
        self.client_with(name, &[&rustls::version::TLS13, &rustls::version::TLS12])
    }

    pub fn client_with(
        &self,
        name: Option<&str>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.pki("ca.crt")).expect("ca"))
            .expect("add ca");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let config = match name {
            None => builder.with_no_client_auth(),
            Some(n) => {
                let certs = CertificateDer::pem_file_iter(self.pki(&format!("{n}.crt")))
                    .expect("cert file")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("certs");
                let key = PrivateKeyDer::from_pem_file(self.pki(&format!("{n}.key"))).expect("key");
                builder
                    .with_client_auth_cert(certs, key)
                    .expect("client auth")
            }
        };
        Client {
            config: Arc::new(config),
            port: self.port,
        }
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn fingerprint(cert: &Path) -> String {
    let der = CertificateDer::from_pem_file(cert).expect("cert");
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The dev CA of a `pki dev` directory, as an rcgen issuer.
fn dev_issuer(pki: &Path) -> Issuer<'static, KeyPair> {
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).expect("ca.key"))
        .expect("parse ca.key");
    let ca_pem = std::fs::read_to_string(pki.join("ca.crt")).expect("ca.crt");
    Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer")
}

/// Writes `pki/NAME.crt` and `.key`: a client certificate with CN `cn` from the dev CA,
/// valid until `not_after` (from a day ago, or earlier for one that has expired).
fn write_client_cert(
    pki: &Path,
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
    cn: &str,
    not_after: OffsetDateTime,
    serial: Option<&[u8]>,
) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let day = time::Duration::days(1);
    p.not_before = (OffsetDateTime::now_utc() - day).min(not_after - day * 30);
    p.not_after = not_after;
    p.serial_number = serial.map(SerialNumber::from_slice);
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, issuer).expect("sign");
    std::fs::write(pki.join(format!("{name}.crt")), cert.pem()).expect("write crt");
    std::fs::write(pki.join(format!("{name}.key")), key.serialize_pem()).expect("write key");
}

/// A `user` client certificate of the fixture's CA that expires `valid_for` from now.
pub fn short_lived_user_cert(fx: &Fixture, name: &str, valid_for: Duration) {
    let pki = fx.dir.path().join("pki");
    let not_after = OffsetDateTime::now_utc() + valid_for;
    write_client_cert(&pki, &dev_issuer(&pki), name, "user", not_after, None);
}

/// Certificates `pki dev` does not make, signed by the dev CA: an expired one, a revoked
/// one (and the CRL revoking it), and one no identity rule matches.
fn extra_certs(pki: &Path) {
    let issuer = dev_issuer(pki);
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    write_client_cert(pki, &issuer, "expired", "user", now - day, None);
    write_client_cert(
        pki,
        &issuer,
        "revoked",
        "user",
        now + day * 30,
        Some(&REVOKED_SERIAL),
    );
    write_client_cert(pki, &issuer, "stranger", "stranger", now + day * 30, None);

    let crl = CertificateRevocationListParams {
        this_update: now - day,
        next_update: now + day * 30,
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from_slice(&REVOKED_SERIAL),
            revocation_time: now - day,
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .expect("sign crl");
    std::fs::write(pki.join("crl.pem"), crl.pem().expect("crl pem")).expect("write crl");
}

/// A running `airlock serve`, killed on drop.
pub struct Server {
    pub child: Child,
}

impl Server {
    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for exit (up to `timeout`) and returns the status and stderr.
    pub fn wait(&mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return (status, err);
            }
            assert!(Instant::now() < deadline, "airlock serve did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the OpenAI error shape and returns `error.message`.
    pub fn openai_error(&self) -> String {
        let v = self.json();
        let e = v["error"]
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {v}"));
        for key in ["message", "type", "param", "code"] {
            assert!(e.contains_key(key), "error.{key} missing: {v}");
        }
        e["message"].as_str().expect("message string").to_owned()
    }
}

/// A TLS client for one fixture.
pub struct Client {
    config: Arc<rustls::ClientConfig>,
    port: u16,
}

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Client {
    /// Connects and completes the client side of the handshake.
    pub fn connect(&self) -> std::io::Result<Tls> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let name = ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(self.config.clone(), name).expect("client conn");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    /// One request on a fresh connection (`Connection: close`).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        self.request_with_headers(method, path, &[], body.unwrap_or_default())
    }

    /// [`request`](Self::request) with extra header lines (written as given).
    pub fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut tls = self.connect()?;
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes())?;
        tls.write_all(body)?;
        tls.flush()?;
        read_response(&mut tls)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None).expect("GET")
    }
}

/// Reads a whole HTTP/1.1 response (content-length or chunked) until the server closes.
pub fn read_response(tls: &mut Tls) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Closing without close_notify after a full response is fine for this purpose.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {raw:?}")))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..pos])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .expect("chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[pos + 2..pos + 2 + size]);
        data = &data[pos + 2 + size + 2..];
    }
    out
}

/// The TLS alert the server sent, from a failed handshake or first read.
pub fn alert_of(err: &std::io::Error) -> Option<rustls::AlertDescription> {
    match err.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(*a),
        _ => None,
    }
}

/// Connects with `client` and returns the alert that refused it (panics if none did).
pub fn refused_with(client: &Client) -> rustls::AlertDescription {
    // TLS 1.3: the client finishes its side before the server has checked the client
    // certificate; the refusal arrives as an alert on the first read.
    let result = client.connect().and_then(|mut tls| {
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        read_response(&mut tls)
    });
    match result {
        Ok(resp) => panic!("expected a refused handshake, got HTTP {}", resp.status),
        Err(e) => alert_of(&e).unwrap_or_else(|| panic!("expected a TLS alert, got {e}")),
    }
}

/// Lower-case hex SHA-256 of `data` (the form audit records hold digests in).
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of the sample `series` (a metric name, with its `{labels}` if any, exactly as
/// the exposition writes it) in Prometheus/OpenMetrics `text`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// As an auditor, with the service stopped: `airlock audit pubkey`, `export` (beside the
/// state directory, as `audit.jsonl`), then `verify --export` with that key, which must
/// pass. Returns the records.
pub fn export_and_verify_state(state: &Path) -> Vec<serde_json::Value> {
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let key = state.with_file_name("audit.pub");
    let export = state.with_file_name("audit.jsonl");
    let out = airlock(&["audit", "pubkey", "--state", &s(state)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&key, &out.stdout).expect("write pubkey");
    let out = airlock(&[
        "audit",
        "export",
        "--state",
        &s(state),
        "--out",
        &s(&export),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = airlock(&[
        "audit",
        "verify",
        "--export",
        &s(&export),
        "--key",
        &s(&key),
    ]);
    assert!(
        out.status.success(),
        "the export does not verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&export).expect("export");
    let mut lines = text.lines();
    let header: serde_json::Value =
        serde_json::from_str(lines.next().expect("header")).expect("header");
    assert_eq!(header["format"], "airlock-audit-export-v1");
    lines
        .map(|l| serde_json::from_str(l).expect("record JSON"))
        .collect()
}
