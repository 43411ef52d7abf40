//! Sealed content and crypto-shredding, on top of [`crate::seal`].
//!
//! # Design
//! - In sealed mode, an event's prompt and output are sealed with AES-256-GCM under the
//!   data key of `(key subject, epoch)`: the key subject is the event's data subject
//!   (`Airlock-Subject`), else the actor's certificate fingerprint, else `anonymous`; the
//!   epoch is `unix time / epoch_length`. The additional data binds the record's seq and
//!   the field (`prompt`/`output`), so sealed blobs cannot be moved between records.
//! - Data keys are stored wrapped by the master key in the sled tree `keys`, keyed by
//!   `u64 BE len(subject) || subject || u64 BE epoch`, written in the same transaction as
//!   the first record they seal.
//! - **Erasure** deletes a subject's wrapped keys and appends an `audit.erase` record in
//!   one transaction; **retention** deletes every key of the epochs older than the
//!   retention period the same way. The sealed bytes stay in the records (they are hashed
//!   into the chain); without the key they are noise. Erasure removes keys, not records.
//!
//! # Non-goals
//! sled may keep old copies of deleted values in its log segments until it rewrites them;
//! the master key is what makes the wrapped keys useless then, see `THREAT_MODEL.md`.

use std::collections::HashMap;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::record::{Event, Record, Sealed as SealedContent};
use crate::seal::{self, DataKey, KeyContext, MasterKey, WrappedKey};

/// AES-GCM nonce length of [`seal::Sealed`].
const NONCE_LEN: usize = 12;

fn seal_err(e: seal::SealError) -> Error {
    Error::Storage(format!("sealing: {e}"))
}

/// The subject whose key seals `event`'s content.
pub(crate) fn key_subject(event: &Event) -> String {
    event
        .subject
        .clone()
        .or_else(|| event.actor.as_ref().map(|a| a.fingerprint.clone()))
        .unwrap_or_else(|| "anonymous".to_string())
}

pub(crate) fn epoch_of(unix: Duration, epoch_length: Duration) -> u64 {
    let len = epoch_length.as_secs().max(1);
    unix.as_secs() / len
}

/// Number of whole epochs that cover `retention` (at least 1).
pub(crate) fn epochs_covering(retention: Duration, epoch_length: Duration) -> u64 {
    let len = epoch_length.as_secs().max(1);
    retention.as_secs().div_ceil(len).max(1)
}

fn subject_prefix(subject: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + subject.len() + 8);
    k.extend_from_slice(&(subject.len() as u64).to_be_bytes());
    k.extend_from_slice(subject.as_bytes());
    k
}

fn tree_key(subject: &str, epoch: u64) -> Vec<u8> {
    let mut k = subject_prefix(subject);
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

/// Splits a keys-tree key into (subject, epoch).
fn parse_tree_key(k: &[u8]) -> Option<(String, u64)> {
    let (len, rest) = k.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_be_bytes(*len)).ok()?;
    let (subject, epoch) = rest.split_at_checked(len)?;
    let epoch: [u8; 8] = epoch.try_into().ok()?;
    Some((
        String::from_utf8(subject.to_vec()).ok()?,
        u64::from_be_bytes(epoch),
    ))
}

fn aad(seq: u64, field: &str) -> Vec<u8> {
    format!("airlock-audit-record\0{seq}\0{field}").into_bytes()
}

/// `nonce || ciphertext || tag`, the byte form kept in records.
fn to_bytes(sealed: &seal::Sealed) -> Vec<u8> {
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.ciphertext().len());
    out.extend_from_slice(sealed.nonce());
    out.extend_from_slice(sealed.ciphertext());
    out
}

fn from_bytes(bytes: &[u8]) -> Result<seal::Sealed> {
    if bytes.len() < NONCE_LEN {
        return Err(Error::Storage("sealed content too short".into()));
    }
    let (nonce, ct) = bytes.split_at(NONCE_LEN);
    // seal::Sealed has no constructor from parts; its serde form is the documented one.
    let json = serde_json::json!({
        "nonce": crate::codec::b64(nonce),
        "ciphertext": crate::codec::b64(ct),
    });
    serde_json::from_value(json).map_err(|e| Error::Storage(format!("sealed content: {e}")))
}

pub(crate) fn seal_content(
    key: &DataKey,
    subject: &str,
    epoch: u64,
    seq: u64,
    prompt: Option<&[u8]>,
    output: Option<&[u8]>,
) -> Result<SealedContent> {
    let seal_one = |field: &str, plain: Option<&[u8]>| -> Result<Option<Vec<u8>>> {
        plain
            .map(|p| {
                seal::seal(key, p, &aad(seq, field))
                    .map(|s| to_bytes(&s))
                    .map_err(seal_err)
            })
            .transpose()
    };
    Ok(SealedContent {
        key_subject: subject.to_string(),
        epoch,
        prompt: seal_one("prompt", prompt)?,
        output: seal_one("output", output)?,
    })
}

/// The writer's cache of unwrapped data keys.
#[derive(Default)]
pub(crate) struct DataKeys {
    cache: HashMap<(String, u64), DataKey>,
}

impl DataKeys {
    /// The data key of `(subject, epoch)`: cached, stored (unwrapped), or new (its wrapped
    /// form appended to `puts`, to be written with the record it seals).
    pub(crate) fn get_or_create(
        &mut self,
        tree: &sled::Tree,
        master: &MasterKey,
        subject: &str,
        epoch: u64,
        puts: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<&DataKey> {
        let id = (subject.to_string(), epoch);
        if !self.cache.contains_key(&id) {
            let ctx = KeyContext { subject, epoch };
            let key = match tree.get(tree_key(subject, epoch))? {
                Some(v) => {
                    let wrapped: WrappedKey = serde_json::from_slice(&v)
                        .map_err(|e| Error::Storage(format!("wrapped key: {e}")))?;
                    seal::unwrap(master, &wrapped, ctx).map_err(seal_err)?
                }
                None => {
                    let key = DataKey::generate().map_err(seal_err)?;
                    let wrapped = seal::wrap(master, &key, ctx).map_err(seal_err)?;
                    let v =
                        serde_json::to_vec(&wrapped).map_err(|e| Error::Storage(e.to_string()))?;
                    puts.push((tree_key(subject, epoch), v));
                    key
                }
            };
            self.cache.insert(id.clone(), key);
        }
        self.cache
            .get(&id)
            .ok_or_else(|| Error::Storage("data key cache".into()))
    }

    pub(crate) fn forget(&mut self, subject: &str, epoch: u64) {
        self.cache.remove(&(subject.to_string(), epoch));
    }

    pub(crate) fn clear(&mut self) {
        self.cache.clear();
    }
}

/// Keys to delete: every key of `subject`, or (retention) every key of an epoch before
/// `before_epoch`. Returns (tree key, subject, epoch).
pub(crate) fn doomed_keys(
    tree: &sled::Tree,
    subject: Option<&str>,
    before_epoch: Option<u64>,
) -> Result<Vec<(Vec<u8>, String, u64)>> {
    let iter = match subject {
        Some(s) => tree.scan_prefix(subject_prefix(s)),
        None => tree.iter(),
    };
    let mut out = Vec::new();
    for item in iter {
        let (k, _) = item?;
        let Some((s, e)) = parse_tree_key(&k) else {
            continue;
        };
        if subject.is_some_and(|want| want != s) {
            continue;
        }
        if before_epoch.is_some_and(|b| e >= b) {
            continue;
        }
        out.push((k.to_vec(), s, e));
    }
    Ok(out)
}

/// A record with its sealed content opened where the key still exists.
#[derive(Debug)]
#[non_exhaustive]
pub struct Shown {
    pub record: Record,
    pub prompt: Option<Zeroizing<Vec<u8>>>,
    pub output: Option<Zeroizing<Vec<u8>>>,
    /// The record had sealed content whose key was erased (or shredded by retention).
    pub erased: bool,
}

impl crate::AuditLog {
    /// Record `seq` with its sealed content decrypted, for `airlock audit show`. Content
    /// whose key was erased is reported as `erased`; digests are always there.
    pub fn show(&self, seq: u64) -> Result<Shown> {
        let record = self.record(seq)?;
        let mut shown = Shown {
            record,
            prompt: None,
            output: None,
            erased: false,
        };
        let Some(sealed) = shown.record.sealed.clone() else {
            return Ok(shown);
        };
        let shared = self.shared();
        let Some(master) = shared.master.as_ref() else {
            return Err(Error::Config(
                "sealed content but no master key in the state directory".into(),
            ));
        };
        let Some(v) = shared
            .keys
            .get(tree_key(&sealed.key_subject, sealed.epoch))?
        else {
            shown.erased = true;
            return Ok(shown);
        };
        let wrapped: WrappedKey =
            serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("wrapped key: {e}")))?;
        let ctx = KeyContext {
            subject: &sealed.key_subject,
            epoch: sealed.epoch,
        };
        let key = seal::unwrap(master, &wrapped, ctx).map_err(seal_err)?;
        let open = |field: &str, blob: &Option<Vec<u8>>| -> Result<Option<Zeroizing<Vec<u8>>>> {
            blob.as_deref()
                .map(|b| seal::open(&key, &from_bytes(b)?, &aad(seq, field)).map_err(seal_err))
                .transpose()
        };
        shown.prompt = open("prompt", &sealed.prompt)?;
        shown.output = open("output", &sealed.output)?;
        Ok(shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_keys_round_trip_and_do_not_collide() {
        assert_eq!(parse_tree_key(&tree_key("a", 7)), Some(("a".into(), 7)));
        assert_ne!(
            tree_key("a", 1),
            tree_key("a\0\0\0\0\0\0\0", 1)[..tree_key("a", 1).len()]
        );
        assert!(!tree_key("ab", 1).starts_with(&subject_prefix("a")));
    }

    #[test]
    fn a_sealed_blob_is_bound_to_its_seq_and_field() {
        let key = DataKey::generate().expect("key");
        let sealed = seal_content(&key, "s", 1, 7, Some(b"text"), None).expect("seal");
        let blob = from_bytes(sealed.prompt.as_deref().expect("prompt")).expect("blob");
        let plain = seal::open(&key, &blob, &aad(7, "prompt")).expect("open");
        assert_eq!(plain.as_slice(), b"text");
        assert!(
            seal::open(&key, &blob, &aad(8, "prompt")).is_err(),
            "moved to seq 8"
        );
        assert!(
            seal::open(&key, &blob, &aad(7, "output")).is_err(),
            "moved to output"
        );
    }

    #[test]
    fn epochs() {
        let day = Duration::from_secs(86_400);
        assert_eq!(epoch_of(Duration::from_secs(86_400 * 3 + 5), day), 3);
        assert_eq!(epochs_covering(Duration::from_secs(86_400 * 30), day), 30);
        assert_eq!(epochs_covering(Duration::from_secs(1), day), 1);
    }
}
