//! The development PKI of `airlock pki dev` and `airlock dev`.
//!
//! One CA signs a server certificate (localhost, 127.0.0.1, ::1) and one client
//! certificate per role (`CN=<role>`); a second, unrelated CA signs `foreign.crt`, which a
//! correctly configured server must refuse. All keys are ECDSA P-256 and written 0600.
//!
//! Non-goal: a production CA. Sites issue certificates with their own PKI; this exists so
//! a fresh machine can run the service and its tests without one.
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use policy::Role;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::error::PkiError;

/// Lifetime of the dev CAs.
const CA_VALIDITY: Duration = Duration::days(3650);
/// Lifetime of the dev server and client certificates.
const LEAF_VALIDITY: Duration = Duration::days(730);
/// Backdating, so a clock slightly behind still accepts fresh certificates.
const BACKDATE: Duration = Duration::hours(1);

/// File names written by [`generate`], relative to the output directory.
pub fn file_names() -> Vec<String> {
    let mut names: Vec<String> = ["ca.crt", "ca.key", "server.crt", "server.key"]
        .map(String::from)
        .into();
    for role in Role::ALL {
        names.push(format!("{role}.crt"));
        names.push(format!("{role}.key"));
    }
    names.extend(["foreign-ca.crt", "foreign.crt", "foreign.key"].map(String::from));
    names
}

/// Writes the dev PKI into `out` (created if missing). Refuses to overwrite any existing
/// file unless `force`; on refusal nothing is written.
pub fn generate(out: &Path, force: bool) -> Result<Vec<PathBuf>, PkiError> {
    fs::create_dir_all(out).map_err(|source| PkiError::Io {
        path: out.to_owned(),
        source,
    })?;
    if !force
        && let Some(existing) = file_names()
            .into_iter()
            .map(|n| out.join(n))
            .find(|p| p.exists())
    {
        return Err(PkiError::Exists(existing));
    }

    let now = OffsetDateTime::now_utc();
    let mut written = Vec::new();
    let mut put = |name: &str, contents: &str, secret: bool| -> Result<(), PkiError> {
        let path = out.join(name);
        write_file(&path, contents, secret)?;
        written.push(path);
        Ok(())
    };

    let (ca_params, ca_key) = ca("Airlock Dev CA", now)?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    put("ca.crt", &ca_cert.pem(), false)?;
    put("ca.key", &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = new_key()?;
    let cert = server_params(now)?.signed_by(&key, &issuer)?;
    put("server.crt", &cert.pem(), false)?;
    put("server.key", &key.serialize_pem(), true)?;

    for role in Role::ALL {
        let key = new_key()?;
        let cert = client_params(role.as_str(), now)?.signed_by(&key, &issuer)?;
        put(&format!("{role}.crt"), &cert.pem(), false)?;
        put(&format!("{role}.key"), &key.serialize_pem(), true)?;
    }

    let (foreign_params, foreign_key) = ca("Airlock Foreign Dev CA", now)?;
    let foreign_ca = foreign_params.self_signed(&foreign_key)?;
    put("foreign-ca.crt", &foreign_ca.pem(), false)?;
    let foreign_issuer = Issuer::new(foreign_params, foreign_key);
    let key = new_key()?;
    // Same CN as a real role: only the chain tells them apart.
    let cert = client_params("user", now)?.signed_by(&key, &foreign_issuer)?;
    put("foreign.crt", &cert.pem(), false)?;
    put("foreign.key", &key.serialize_pem(), true)?;
    Ok(written)
}

fn new_key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
}

fn ca(name: &str, now: OffsetDateTime) -> Result<(CertificateParams, KeyPair), PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Airlock development");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    Ok((params, new_key()?))
}

fn server_params(now: OffsetDateTime) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + LEAF_VALIDITY;
    Ok(params)
}

/// Parameters of a client certificate `CN=<cn>`, valid from an hour ago for two years.
pub fn client_params(cn: &str, now: OffsetDateTime) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Airlock development");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + LEAF_VALIDITY;
    Ok(params)
}

/// Writes `contents` to `path`; secrets are created 0600 from the start (never chmod'ed
/// after the fact, so there is no window where a key is readable by others).
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    // Remove first so an existing file's (possibly wider) mode is not kept under --force.
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_every_file_with_private_keys_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = generate(dir.path(), false).expect("generate");
        assert_eq!(written.len(), file_names().len());
        for path in written {
            let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
            let want = if path.extension().is_some_and(|e| e == "key") {
                0o600
            } else {
                0o644
            };
            assert_eq!(mode, want, "{}", path.display());
        }
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("user.key"), "keep me").expect("write");
        let err = generate(dir.path(), false).expect_err("must refuse");
        assert!(
            matches!(err, PkiError::Exists(ref p) if p.ends_with("user.key")),
            "{err}"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("user.key")).expect("read"),
            "keep me"
        );
        assert!(
            !dir.path().join("ca.crt").exists(),
            "nothing written on refusal"
        );
        generate(dir.path(), true).expect("--force overwrites");
        assert_ne!(
            fs::read_to_string(dir.path().join("user.key")).expect("read"),
            "keep me"
        );
    }
}
