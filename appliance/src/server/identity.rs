//! The caller's identity: facts of its verified client certificate and the roles the
//! policy grants them.
//!
//! INVARIANT: an [`Identity`] is only built by [`Identity::from_verified_session`], from a
//! rustls server session whose handshake has completed. The server's verifier makes a
//! client certificate mandatory and verifies it (chain, validity, CRLs) during the
//! handshake, so a session that reached HTTP holds a verified certificate. Handlers never
//! see an unverified one.
use std::net::SocketAddr;

use policy::{CertFacts, Fingerprint, Policy, Role, RoleSet};
use ring::digest;
use x509_parser::extensions::GeneralName;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Identity {
    facts: CertFacts,
    subject: String,
    roles: RoleSet,
    peer: Option<SocketAddr>,
}

impl Identity {
    /// Reads the verified peer certificate of a finished handshake. `None` when the session
    /// has no peer certificate or it cannot be parsed (then the caller has no identity and
    /// is refused everywhere).
    pub(super) fn from_verified_session(
        session: &rustls::ServerConnection,
        peer: Option<SocketAddr>,
        policy: &Policy,
    ) -> Option<Identity> {
        let leaf = session.peer_certificates()?.first()?;
        let (facts, subject) = cert_facts(leaf.as_ref())?;
        let roles = policy.roles_for(&facts, peer.map(|p| p.ip()));
        Some(Identity {
            facts,
            subject,
            roles,
            peer,
        })
    }

    /// SHA-256 of the client certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        self.facts.fingerprint
    }

    /// The certificate subject as an RFC 4514 string.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// All certificate facts the policy matched on.
    pub fn facts(&self) -> &CertFacts {
        &self.facts
    }

    /// Roles granted by the policy (possibly none).
    pub fn roles(&self) -> RoleSet {
        self.roles
    }

    /// Whether the policy grants `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(role)
    }

    /// The TCP peer.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// Extracts the facts rules match on. `None` if the DER does not parse (rustls/webpki
/// accepted it, so this would be a parser disagreement: refuse rather than guess).
pub(crate) fn cert_facts(der: &[u8]) -> Option<(CertFacts, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let hash = digest::digest(&digest::SHA256, der);
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(hash.as_ref());
    let strings = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let subject = cert.subject();
    let mut facts = CertFacts {
        fingerprint: Fingerprint(fingerprint),
        common_names: strings(&mut subject.iter_common_name()),
        org_units: strings(&mut subject.iter_organizational_unit()),
        orgs: strings(&mut subject.iter_organization()),
        san_uris: Vec::new(),
        san_emails: Vec::new(),
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => facts.san_uris.push((*u).to_owned()),
                GeneralName::RFC822Name(e) => facts.san_emails.push((*e).to_owned()),
                _ => {}
            }
        }
    }
    Some((facts, subject.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    #[test]
    fn facts_come_from_the_certificate() {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, "triage");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "Radiology");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "St Example");
        params.subject_alt_names = vec![
            SanType::URI(
                "spiffe://hospital.example/app/triage"
                    .try_into()
                    .expect("uri"),
            ),
            SanType::Rfc822Name("ops@hospital.example".try_into().expect("email")),
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let (facts, subject) = cert_facts(cert.der()).expect("parses");
        assert_eq!(facts.common_names, ["triage"]);
        assert_eq!(facts.org_units, ["Radiology"]);
        assert_eq!(facts.orgs, ["St Example"]);
        assert_eq!(facts.san_uris, ["spiffe://hospital.example/app/triage"]);
        assert_eq!(facts.san_emails, ["ops@hospital.example"]);
        assert!(subject.contains("CN=triage"), "{subject}");
        let want = digest::digest(&digest::SHA256, cert.der());
        assert_eq!(&facts.fingerprint.0[..], want.as_ref());
    }

    #[test]
    fn garbage_has_no_facts() {
        assert!(cert_facts(b"not a certificate").is_none());
    }
}
