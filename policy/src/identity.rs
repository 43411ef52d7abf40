//! Identity rules: which certificate (and optionally which peer address) gets which roles.
//!
//! A rule matches when **every** matcher it sets matches (AND); a certificate attribute
//! that may occur several times (OU, O, SAN URIs, SAN emails) matches when **any** of its
//! values matches the glob. The roles of a certificate are the union of the roles of all
//! matching rules; no matching rule means no role (default deny).
use std::fmt;
use std::net::IpAddr;

use globset::{GlobBuilder, GlobMatcher};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The roles of ARCHITECTURE.md §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Calls the inference API (`/v1/models`, `/v1/chat/completions`, `/v1/completions`).
    User,
    /// Reads the audit log and its checkpoints.
    Auditor,
    /// Installs and activates model bundles.
    Admin,
    /// Reads `/metrics`.
    Operator,
    /// Erases a data subject's sealed content.
    Privacy,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 5] = [
        Role::User,
        Role::Auditor,
        Role::Admin,
        Role::Operator,
        Role::Privacy,
    ];

    /// The name used in the policy file and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Privacy => "privacy",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the five roles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (expected one of user, auditor, admin, operator, privacy)")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A set of roles. The empty set (the [`Default`]) grants nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RoleSet(u8);

impl RoleSet {
    /// No role at all.
    pub const EMPTY: RoleSet = RoleSet(0);

    /// Whether `role` is in the set.
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Adds `role`.
    pub fn insert(&mut self, role: Role) {
        self.0 |= role.bit();
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The roles in the set, in [`Role::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        let mut set = RoleSet::EMPTY;
        for r in iter {
            set.insert(r);
        }
        set
    }
}

impl fmt::Display for RoleSet {
    /// Comma-separated role names, or `-` for none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut sep = "";
        for r in self.iter() {
            write!(f, "{sep}{r}")?;
            sep = ",";
        }
        Ok(())
    }
}

/// A SHA-256 certificate fingerprint (of the DER certificate).
///
/// Written in the policy as 64 hex digits, upper or lower case, optionally separated by
/// colons (the form `openssl x509 -fingerprint -sha256` prints).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl fmt::Display for Fingerprint {
    /// Lower-case hex, no separators.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
        let bad = || {
            format!(
                "invalid fingerprint `{s}`: expected a SHA-256 digest as 64 hex digits (colons allowed)"
            )
        };
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or_else(bad)?;
            let lo = hex_val(pair[1]).ok_or_else(bad)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Fingerprint(out))
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.to_string()
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A glob over a certificate string attribute (`*`, `?`, `[a-z]`, `{a,b}`).
///
/// `*` also matches `/`, so `spiffe://hospital.example/*` covers every path below.
#[derive(Clone, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern {
    source: String,
    matcher: GlobMatcher,
}

impl Pattern {
    /// Parses a case-sensitive glob.
    pub fn new(source: &str) -> Result<Self, String> {
        Self::build(source, false)
    }

    /// Parses a glob that ignores ASCII case (used for e-mail addresses).
    pub fn new_case_insensitive(source: &str) -> Result<Self, String> {
        Self::build(source, true)
    }

    fn build(source: &str, case_insensitive: bool) -> Result<Self, String> {
        if source.is_empty() {
            return Err("invalid glob: empty pattern".to_owned());
        }
        let glob = GlobBuilder::new(source)
            .case_insensitive(case_insensitive)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("invalid glob `{source}`: {}", e.kind()))?;
        Ok(Pattern {
            source: source.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    /// Whether `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        self.matcher.is_match(value)
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl TryFrom<String> for Pattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Pattern::new(&s)
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.source
    }
}

/// An e-mail glob: like [`Pattern`] but case-insensitive, as mail domains are.
fn de_email_pattern<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Pattern>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| Pattern::new_case_insensitive(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// What a rule matches on. Unset matchers are not checked; at least one certificate
/// matcher must be set (checked at load: a rule matching every certificate is a mistake).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// SHA-256 fingerprint of the whole certificate: the strictest matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// Glob on the subject common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cn: Option<Pattern>,
    /// Glob on any subject organisational unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ou: Option<Pattern>,
    /// Glob on any subject organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub o: Option<Pattern>,
    /// Glob on any URI subject alternative name (e.g. SPIFFE ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub san_uri: Option<Pattern>,
    /// Case-insensitive glob on any e-mail subject alternative name.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_email_pattern"
    )]
    pub san_email: Option<Pattern>,
    /// Peer address ranges the connection must come from (any of them); empty = anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer: Vec<IpNet>,
}

impl Match {
    /// Whether at least one certificate attribute is constrained.
    pub fn constrains_certificate(&self) -> bool {
        self.fingerprint.is_some()
            || self.cn.is_some()
            || self.ou.is_some()
            || self.o.is_some()
            || self.san_uri.is_some()
            || self.san_email.is_some()
    }

    /// Whether the certificate facts and peer address satisfy every set matcher.
    pub fn matches(&self, cert: &CertFacts, peer: Option<IpAddr>) -> bool {
        fn any(p: &Option<Pattern>, values: &[String]) -> bool {
            match p {
                None => true,
                Some(p) => values.iter().any(|v| p.is_match(v)),
            }
        }
        if let Some(fp) = &self.fingerprint
            && fp.0 != cert.fingerprint.0
        {
            return false;
        }
        if !(any(&self.cn, &cert.common_names)
            && any(&self.ou, &cert.org_units)
            && any(&self.o, &cert.orgs)
            && any(&self.san_uri, &cert.san_uris)
            && any(&self.san_email, &cert.san_emails))
        {
            return false;
        }
        if self.peer.is_empty() {
            return true;
        }
        // Fail closed: a rule restricted to a network never matches an unknown peer.
        let Some(ip) = peer else { return false };
        let ip = ip.to_canonical();
        self.peer.iter().any(|net| net.contains(&ip))
    }
}

/// One `[[identity]]` rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRule {
    /// Free text naming the rule in logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the rule matches.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// The roles it grants.
    pub roles: Vec<Role>,
}

/// The facts of a **verified** client certificate that rules match on.
///
/// The appliance fills this from the certificate rustls verified; the policy crate never
/// sees certificates itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// SHA-256 of the DER certificate.
    pub fingerprint: Fingerprint,
    /// Subject common names (usually one).
    pub common_names: Vec<String>,
    /// Subject organisational units.
    pub org_units: Vec<String>,
    /// Subject organisations.
    pub orgs: Vec<String>,
    /// URI subject alternative names.
    pub san_uris: Vec<String>,
    /// E-mail subject alternative names.
    pub san_emails: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(cn: &str) -> CertFacts {
        CertFacts {
            fingerprint: Fingerprint([7; 32]),
            common_names: vec![cn.to_owned()],
            org_units: vec!["Radiology".into(), "Research".into()],
            orgs: vec!["St Example Hospital".into()],
            san_uris: vec!["spiffe://hospital.example/app/triage".into()],
            san_emails: vec!["Dr.Who@Hospital.Example".into()],
        }
    }

    #[test]
    fn fingerprint_accepts_colons_and_case() {
        let hex = "AB:".repeat(31) + "AB";
        let fp: Fingerprint = hex.parse().expect("valid");
        assert_eq!(fp.0, [0xab; 32]);
        assert_eq!(fp.to_string(), "ab".repeat(32));
    }

    #[test]
    fn fingerprint_rejects_wrong_length_and_non_hex() {
        assert!("abcd".parse::<Fingerprint>().is_err());
        let bad = "zz".repeat(32);
        let err = bad.parse::<Fingerprint>().expect_err("non-hex");
        assert!(err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn bad_glob_is_rejected_with_reason() {
        let err = Pattern::new("[abc").expect_err("unclosed class");
        assert!(err.contains("invalid glob `[abc`"), "{err}");
        assert!(Pattern::new("").is_err());
    }

    #[test]
    fn star_crosses_slashes_in_uris() {
        let p = Pattern::new("spiffe://hospital.example/*").expect("glob");
        assert!(p.is_match("spiffe://hospital.example/app/triage"));
        assert!(!p.is_match("spiffe://evil.example/app"));
    }

    #[test]
    fn all_set_matchers_must_match_and_any_value_suffices() {
        let m = Match {
            cn: Some(Pattern::new("dr-*").expect("glob")),
            ou: Some(Pattern::new("Research").expect("glob")),
            san_email: Some(Pattern::new_case_insensitive("*@hospital.example").expect("glob")),
            ..Match::default()
        };
        assert!(m.matches(&facts("dr-who"), None));
        assert!(!m.matches(&facts("nurse"), None), "cn must match too");
    }

    #[test]
    fn fingerprint_matcher_is_exact() {
        let m = Match {
            fingerprint: Some(Fingerprint([7; 32])),
            ..Match::default()
        };
        assert!(m.matches(&facts("x"), None));
        let other = Match {
            fingerprint: Some(Fingerprint([8; 32])),
            ..Match::default()
        };
        assert!(!other.matches(&facts("x"), None));
    }

    #[test]
    fn peer_restriction_fails_closed() {
        let m = Match {
            cn: Some(Pattern::new("*").expect("glob")),
            peer: vec!["10.0.0.0/8".parse().expect("cidr")],
            ..Match::default()
        };
        assert!(m.matches(&facts("a"), Some("10.1.2.3".parse().expect("ip"))));
        assert!(
            m.matches(&facts("a"), Some("::ffff:10.1.2.3".parse().expect("ip"))),
            "v4-mapped v6 peers are compared as v4"
        );
        assert!(!m.matches(&facts("a"), Some("192.168.1.1".parse().expect("ip"))));
        assert!(!m.matches(&facts("a"), None));
    }

    #[test]
    fn role_set_display_and_membership() {
        let set: RoleSet = [Role::Operator, Role::User].into_iter().collect();
        assert!(set.contains(Role::User) && !set.contains(Role::Admin));
        assert_eq!(set.to_string(), "user,operator");
        assert_eq!(RoleSet::EMPTY.to_string(), "-");
        assert_eq!("privacy".parse::<Role>(), Ok(Role::Privacy));
        assert!("root".parse::<Role>().is_err());
    }
}
