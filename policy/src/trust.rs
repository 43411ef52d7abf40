//! `[trust]`: who may publish model bundles (ARCHITECTURE.md §7). Plain data; the
//! `airlock-bundle` crate turns it into a trust root and does the cryptography.
use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::config::Policy;
use crate::error::PolicyError;

/// Distinct trusted keys that must sign a bundle when the policy does not say.
pub const DEFAULT_TRUST_THRESHOLD: usize = 1;
/// Largest bundle accepted over HTTP (`POST /v1/admin/bundles`): 16 GiB, which holds an
/// 8B model at F16 or a 14B one at Q8_0; larger models need the policy to say so. (The
/// upload is verified from its head as it streams, so the limit bounds disk use only for
/// validly signed bundles.)
pub const DEFAULT_MAX_BUNDLE_BYTES: u64 = 16 << 30;

/// `[trust]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// k: how many distinct trusted publisher keys must sign (1 ≤ k ≤ publishers).
    #[serde(default = "d_threshold")]
    pub threshold: usize,
    /// Bundle names that may be installed: exact names, or prefixes written `prefix*`.
    pub allowed_names: Vec<String>,
    /// Accept bundles that carry no `expires` (they never expire). Off by default.
    #[serde(default)]
    pub accept_without_expiry: bool,
    /// Largest bundle accepted over HTTP, in bytes.
    #[serde(default = "d_max_bundle")]
    pub max_bundle_bytes: u64,
    /// Trusted publisher keys (`[[trust.publisher]]`).
    #[serde(rename = "publisher")]
    pub publishers: Vec<Publisher>,
}

fn d_threshold() -> usize {
    DEFAULT_TRUST_THRESHOLD
}
fn d_max_bundle() -> u64 {
    DEFAULT_MAX_BUNDLE_BYTES
}

/// `[[trust.publisher]]`: a name and exactly one of `key` / `key_file`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    /// Shown in `models list` and audit records.
    pub name: String,
    /// The ed25519 public key, base64 of the 32 raw bytes (the `.pub` file's content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A `.pub` file written by `airlock keys generate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// A trusted publisher key, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherKey {
    /// Publisher name.
    pub name: String,
    /// Raw ed25519 public key.
    pub key: [u8; 32],
}

fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("an ed25519 public key is 32 bytes, found {}", b.len()))
}

/// A name pattern: `[a-z0-9][a-z0-9._-]*`, optionally ending in `*`.
fn valid_name_pattern(p: &str) -> bool {
    let body = p.strip_suffix('*').unwrap_or(p);
    (p == "*" || !body.is_empty())
        && body
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl Policy {
    pub(crate) fn check_trust(&self) -> Result<(), PolicyError> {
        let Some(t) = &self.trust else {
            return Ok(());
        };
        if t.publishers.is_empty() {
            return Err(self.invalid("trust.publisher", "at least one publisher key is required"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in t.publishers.iter().enumerate() {
            if p.name.trim().is_empty() {
                return Err(self.invalid(format!("trust.publisher[{i}].name"), "must not be empty"));
            }
            if !names.insert(p.name.as_str()) {
                return Err(self.invalid(
                    format!("trust.publisher[{i}].name"),
                    format!("publisher `{}` is listed twice", p.name),
                ));
            }
            match (&p.key, &p.key_file) {
                (Some(k), None) => decode_key(k)
                    .map(drop)
                    .map_err(|r| self.invalid(format!("trust.publisher[{i}].key"), r))?,
                (None, Some(_)) => {}
                _ => {
                    return Err(self.invalid(
                        format!("trust.publisher[{i}]"),
                        "exactly one of `key` and `key_file` is required",
                    ));
                }
            }
        }
        if t.threshold == 0 || t.threshold > t.publishers.len() {
            return Err(self.invalid(
                "trust.threshold",
                format!(
                    "must be between 1 and the number of publishers ({})",
                    t.publishers.len()
                ),
            ));
        }
        if t.allowed_names.is_empty() {
            return Err(self.invalid(
                "trust.allowed_names",
                "list the bundle names that may be installed (`prefix*` allowed)",
            ));
        }
        for (i, n) in t.allowed_names.iter().enumerate() {
            if !valid_name_pattern(n) {
                return Err(self.invalid(
                    format!("trust.allowed_names[{i}]"),
                    format!("`{n}` is not a name of [a-z0-9._-], optionally ending in `*`"),
                ));
            }
        }
        if t.max_bundle_bytes == 0 {
            return Err(self.invalid("trust.max_bundle_bytes", "must be greater than 0"));
        }
        Ok(())
    }

    /// The trusted publisher keys, decoded (reading `key_file`s). Errors name the key
    /// path. The same key under two names is refused: it would count twice towards the
    /// threshold. `None` when the policy has no `[trust]` section.
    pub fn trust_keys(&self) -> Result<Option<Vec<PublisherKey>>, PolicyError> {
        let Some(t) = &self.trust else {
            return Ok(None);
        };
        let mut out: Vec<PublisherKey> = Vec::new();
        for (i, p) in t.publishers.iter().enumerate() {
            let key = match (&p.key, &p.key_file) {
                (Some(k), _) => decode_key(k)
                    .map_err(|r| self.invalid(format!("trust.publisher[{i}].key"), r))?,
                (None, Some(f)) => {
                    let key_path = format!("trust.publisher[{i}].key_file");
                    let text = std::fs::read_to_string(f).map_err(|e| {
                        self.invalid(&key_path, format!("cannot read {}: {e}", f.display()))
                    })?;
                    decode_key(&text)
                        .map_err(|r| self.invalid(&key_path, format!("{}: {r}", f.display())))?
                }
                (None, None) => {
                    return Err(self.invalid(
                        format!("trust.publisher[{i}]"),
                        "exactly one of `key` and `key_file` is required",
                    ));
                }
            };
            if let Some(other) = out.iter().find(|o| o.key == key) {
                return Err(self.invalid(
                    format!("trust.publisher[{i}]"),
                    format!("same key as publisher `{}`", other.name),
                ));
            }
            out.push(PublisherKey {
                name: p.name.clone(),
                key,
            });
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{Policy, PolicyError};

    const KEY_A: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const KEY_B: &str = "Pkt4Y4S1o6cpDKNfX9zH0nr4P0V3sbN6BzXm2WqTTC4=";

    fn parse(trust: &str) -> Result<Policy, PolicyError> {
        let text =
            format!("[tls]\ncert = \"s.crt\"\nkey = \"s.key\"\nclient_ca = [\"ca.crt\"]\n{trust}");
        Policy::parse(&text, Path::new("/etc/airlock/airlock.toml"))
    }

    fn key_of(r: Result<Policy, PolicyError>) -> String {
        r.expect_err("invalid").key().unwrap_or("").to_owned()
    }

    #[test]
    fn trust_section_parses_with_defaults() {
        let p = parse(&format!(
            "[trust]\nallowed_names = [\"smollm2-*\"]\n[[trust.publisher]]\nname = \"a\"\nkey = \"{KEY_A}\"\n\
             [[trust.publisher]]\nname = \"b\"\nkey_file = \"keys/b.pub\"\n"
        ))
        .expect("valid");
        let t = p.trust.as_ref().expect("trust");
        assert_eq!(t.threshold, 1);
        assert!(!t.accept_without_expiry);
        assert_eq!(
            t.publishers[1].key_file.as_deref(),
            Some(Path::new("/etc/airlock/keys/b.pub"))
        );
        assert!(parse("").expect("no trust").trust.is_none());
    }

    #[test]
    fn example_trusts_nobody_and_its_commented_trust_section_parses() {
        let example = crate::EXAMPLE_POLICY;
        let p = Policy::parse(example, Path::new("/etc/airlock/airlock.toml")).expect("example");
        assert!(
            p.trust.is_none(),
            "the shipped template must trust no publisher"
        );
        let start = example.find("# [trust]").expect("commented [trust]");
        let uncommented: String = example[start..]
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .or_else(|| l.strip_prefix('#'))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replace("<content of clinical-it.pub>", KEY_B);
        let text = format!("{}{uncommented}", &example[..start]);
        let p = Policy::parse(&text, Path::new("/etc/airlock/airlock.toml")).expect("uncommented");
        let t = p.trust.expect("trust");
        assert_eq!((t.threshold, t.publishers.len()), (2, 2));
        assert_eq!(
            t.publishers[0].key_file.as_deref(),
            Some(Path::new("/etc/airlock/keys/security-team.pub"))
        );
    }

    #[test]
    fn trust_errors_name_their_key_path() {
        let pubs = format!(
            "[[trust.publisher]]\nname = \"a\"\nkey = \"{KEY_A}\"\n[[trust.publisher]]\nname = \"b\"\nkey = \"{KEY_B}\"\n"
        );
        let names = "allowed_names = [\"m\"]\n";
        assert_eq!(
            key_of(parse(&format!("[trust]\n{names}threshold = 3\n{pubs}"))),
            "trust.threshold"
        );
        assert_eq!(
            key_of(parse(&format!("[trust]\n{names}threshold = 0\n{pubs}"))),
            "trust.threshold"
        );
        assert_eq!(
            key_of(parse(&format!("[trust]\nallowed_names = []\n{pubs}"))),
            "trust.allowed_names"
        );
        assert_eq!(
            key_of(parse(&format!(
                "[trust]\nallowed_names = [\"Bad Name\"]\n{pubs}"
            ))),
            "trust.allowed_names[0]"
        );
        assert_eq!(
            key_of(parse(&format!(
                "[trust]\n{names}[[trust.publisher]]\nname = \"a\"\nkey = \"abc\"\n"
            ))),
            "trust.publisher[0].key"
        );
        assert_eq!(
            key_of(parse(&format!(
                "[trust]\n{names}[[trust.publisher]]\nname = \"a\"\n"
            ))),
            "trust.publisher[0]"
        );
        assert_eq!(
            key_of(parse(&format!(
                "[trust]\n{names}[[trust.publisher]]\nname = \"a\"\nkey = \"{KEY_A}\"\n[[trust.publisher]]\nname = \"a\"\nkey = \"{KEY_B}\"\n"
            ))),
            "trust.publisher[1].name"
        );
        assert_eq!(
            key_of(parse(&format!("[trust]\n{names}colour = 1\n{pubs}"))),
            "trust.colour"
        );
    }

    #[test]
    fn key_files_are_read_and_duplicates_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.pub"), format!("{KEY_A}\n")).expect("write");
        let text = format!(
            "[tls]\ncert = \"s.crt\"\nkey = \"s.key\"\nclient_ca = [\"ca.crt\"]\n[trust]\nallowed_names = [\"m\"]\n\
             [[trust.publisher]]\nname = \"a\"\nkey_file = \"a.pub\"\n[[trust.publisher]]\nname = \"a2\"\nkey = \"{KEY_A}\"\n\
             [[trust.publisher]]\nname = \"c\"\nkey_file = \"missing.pub\"\n"
        );
        let p = Policy::parse(&text, &dir.path().join("airlock.toml")).expect("parses");
        let err = p.trust_keys().expect_err("duplicate key");
        assert_eq!(err.key(), Some("trust.publisher[1]"));
        assert!(
            err.to_string().contains("same key as publisher `a`"),
            "{err}"
        );
        let text = text.replace(
            &format!("name = \"a2\"\nkey = \"{KEY_A}\""),
            &format!("name = \"b\"\nkey = \"{KEY_B}\""),
        );
        let p = Policy::parse(&text, &dir.path().join("airlock.toml")).expect("parses");
        let err = p.trust_keys().expect_err("missing file");
        assert_eq!(err.key(), Some("trust.publisher[2].key_file"));
    }
}
