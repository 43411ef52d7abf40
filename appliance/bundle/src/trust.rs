//! Who may publish models: trusted keys, a threshold, allowed names, expiry rule.
//! [`TrustRoot::check_signatures`] is the **one** place signatures are counted.
use std::collections::{BTreeMap, BTreeSet};

use crate::error::BundleError;
use crate::signature::{KeyId, PublicKey, Signed};

/// A publisher key trusted by the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// Name in the policy (shown in `models list` and audit records).
    pub name: String,
    /// The key.
    pub key: PublicKey,
}

/// Whether a bundle without `expires` is accepted. The unsafe choice is named loudly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryEnforcement {
    /// Every bundle must carry `expires` (and be before it).
    Required,
    /// Bundles without `expires` never expire: an old bundle can be replayed forever
    /// (anti-rollback still refuses one older than what was installed).
    UnsafeAllowMissing,
}

/// Which bundle names may be installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameRule {
    /// Any name (ad-hoc `bundle verify --trust-key`).
    Any,
    /// Exact names, or prefixes written `prefix*`.
    Only(Vec<String>),
}

impl NameRule {
    /// Whether `name` is allowed.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            NameRule::Any => true,
            NameRule::Only(list) => list.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => p == name,
            }),
        }
    }
}

/// The trust configuration a bundle is verified against.
#[derive(Debug, Clone)]
pub struct TrustRoot {
    keys: BTreeMap<KeyId, TrustedKey>,
    threshold: usize,
    names: NameRule,
    expiry: ExpiryEnforcement,
}

/// A trusted key that signed (the outcome of the threshold count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Policy name of the key.
    pub name: String,
    /// Key id.
    pub keyid: KeyId,
}

impl TrustRoot {
    /// Builds a trust root. Refuses no keys, a threshold of 0 or above the number of
    /// keys, and the same key listed twice (it would count as two distinct publishers).
    pub fn new(
        keys: Vec<TrustedKey>,
        threshold: usize,
        names: NameRule,
        expiry: ExpiryEnforcement,
    ) -> Result<TrustRoot, BundleError> {
        let err = |reason: String| BundleError::Key {
            what: "trust root".into(),
            reason,
        };
        let mut map = BTreeMap::new();
        for k in keys {
            let id = k.key.id();
            if let Some(prev) = map.insert(id, k) {
                return Err(err(format!("key {id} is listed twice (`{}`)", prev.name)));
            }
        }
        if threshold == 0 || threshold > map.len() {
            return Err(err(format!(
                "threshold {threshold} must be between 1 and the number of keys ({})",
                map.len()
            )));
        }
        Ok(TrustRoot {
            keys: map,
            threshold,
            names,
            expiry,
        })
    }

    /// The same root with another threshold (`bundle verify --threshold`); refused
    /// outside 1..=number of keys.
    pub fn with_threshold(mut self, threshold: usize) -> Result<TrustRoot, BundleError> {
        if threshold == 0 || threshold > self.keys.len() {
            return Err(BundleError::Key {
                what: "trust root".into(),
                reason: format!(
                    "threshold {threshold} must be between 1 and the number of keys ({})",
                    self.keys.len()
                ),
            });
        }
        self.threshold = threshold;
        Ok(self)
    }

    /// The threshold k.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Allowed names.
    pub fn names(&self) -> &NameRule {
        &self.names
    }

    /// Expiry rule.
    pub fn expiry(&self) -> ExpiryEnforcement {
        self.expiry
    }

    /// The policy name of a key id, if trusted.
    pub fn name_of(&self, id: &KeyId) -> Option<&str> {
        self.keys.get(id).map(|k| k.name.as_str())
    }

    /// Counts distinct trusted keys with a valid signature over `signed.bytes` and
    /// requires at least the threshold. This is the only threshold-counting function.
    ///
    /// - A signature by an unknown key is ignored: never counted, never an error.
    /// - A key that signs twice is counted once: later entries with a key id already
    ///   seen are skipped, whatever they contain.
    /// - A signature by a trusted key that does not verify is an error
    ///   ([`BundleError::BadSignature`]): the manifest was edited after signing.
    pub fn check_signatures<T>(&self, signed: &Signed<T>) -> Result<Vec<Signer>, BundleError> {
        let mut seen = BTreeSet::new();
        let mut signers = Vec::new();
        for s in &signed.signatures {
            if !seen.insert(s.keyid) {
                continue;
            }
            let Some(trusted) = self.keys.get(&s.keyid) else {
                tracing::debug!(keyid = %s.keyid, "signature by an untrusted key ignored");
                continue;
            };
            if !trusted.key.verifies(&signed.bytes, &s.sig) {
                return Err(BundleError::BadSignature {
                    name: trusted.name.clone(),
                    keyid: s.keyid.to_string(),
                });
            }
            signers.push(Signer {
                name: trusted.name.clone(),
                keyid: s.keyid,
            });
        }
        if signers.len() < self.threshold {
            return Err(BundleError::BelowThreshold {
                valid: signers.len(),
                threshold: self.threshold,
            });
        }
        Ok(signers)
    }
}
