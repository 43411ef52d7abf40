//! Errors of the appliance's start-up steps. HTTP-facing errors live in
//! `server::error` (one mapping to status + OpenAI body).
use std::path::PathBuf;

/// Generating the dev PKI failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file of the dev PKI already exists and `--force` was not given.
    #[error("{} already exists (use --force to overwrite the dev PKI)", .0.display())]
    Exists(PathBuf),
    /// Writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// rcgen refused the parameters (a bug in this module, not a user error).
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// The TLS material named by the policy is unusable. Always an operator/installer mistake:
/// the service refuses to start rather than serve with a weaker configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or is not PEM.
    #[error("{what} {}: {reason}", path.display())]
    File {
        /// What the file should hold ("server certificate", "client CA", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The private key is of a type rustls's ring provider cannot sign with.
    #[error("server key {}: unsupported key type (use ECDSA P-256/P-384, Ed25519 or RSA >= 2048 bits)", path.display())]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
    },
    /// The private key is not the key of the server certificate.
    #[error("server key {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The server certificate is outside its validity period.
    #[error("server certificate {} is not valid now: {reason}", path.display())]
    CertNotValid {
        /// The certificate file.
        path: PathBuf,
        /// Expired on / not valid before which date.
        reason: String,
    },
    /// The client CA bundle or CRLs could not build a verifier.
    #[error("client certificate verification: {0}")]
    Verifier(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Getting the listening sockets failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// Binding a configured address failed (in use, permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// systemd socket activation variables are malformed or a passed fd is unusable.
    #[error("socket activation: {0}")]
    Activation(String),
}

/// A lockdown layer could not be applied (defined beside the layers, in `policy`).
pub use policy::LockdownError;
