//! Inclusion and consistency proofs over the log (RFC 6962 via [`crate::merkle`]), for an
//! auditor who holds one record or an old checkpoint but not the whole log.
//!
//! Proof generation reads the record hashes `0..size` from the store (O(size)); the proof
//! itself is O(log size). A proof is tied to a signed checkpoint whenever one of that size
//! exists, so it can be checked with the log's public key alone.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::seq_key;
use crate::merkle::{self, Hash};
use crate::note::Verifier;
use crate::record::{Digest, Kind, Record};
use crate::verify::open_note;

/// Record `seq` is leaf `seq` of the tree of `size` records whose root is `root`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub seq: u64,
    pub size: u64,
    /// The record's chain hash (the Merkle leaf input).
    pub record_hash: Digest,
    /// Audit path, leaf to root.
    pub proof: Vec<Hash>,
    pub root: Hash,
    /// The signed checkpoint of `size`, when the log signed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

impl fmt::Display for InclusionProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "inclusion proof (RFC 6962)")?;
        writeln!(f, "seq:         {}", self.seq)?;
        writeln!(f, "tree size:   {}", self.size)?;
        writeln!(f, "record hash: {}", self.record_hash)?;
        writeln!(
            f,
            "leaf hash:   {}",
            merkle::leaf_hash(self.record_hash.as_bytes())
        )?;
        writeln!(f, "root:        {}", self.root)?;
        for (i, h) in self.proof.iter().enumerate() {
            writeln!(f, "path[{i}]:     {h}")?;
        }
        match &self.checkpoint {
            Some(note) => write!(f, "checkpoint:\n{note}"),
            None => writeln!(
                f,
                "checkpoint:  none signed at this size (root is unsigned)"
            ),
        }
    }
}

/// The tree of `old_size` records is a prefix of the tree of `new_size` records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint of `new_size`.
    pub checkpoint: String,
}

impl crate::AuditLog {
    fn leaf_hashes(&self, size: u64) -> Result<Vec<Hash>> {
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for item in self.shared().records.range(seq_key(0)..seq_key(size)) {
            let (_, v) = item?;
            let r = Record::from_json(&v).map_err(Error::Storage)?;
            out.push(merkle::leaf_hash(r.hash.as_bytes()));
        }
        Ok(out)
    }

    /// The signed note of the checkpoint of `size`, if the log signed one (it is the record
    /// at seq `size`).
    fn checkpoint_of_size(&self, size: u64) -> Result<Option<String>> {
        if size >= self.len() {
            return Ok(None);
        }
        let r = self.record(size)?;
        Ok((r.kind == Kind::AuditCheckpoint)
            .then(|| r.params.get("note").cloned())
            .flatten())
    }

    /// Inclusion proof of record `seq` in the tree of `size` records; by default the size
    /// of the latest signed checkpoint (or the whole log if `seq` is newer than it).
    pub fn prove(&self, seq: u64, size: Option<u64>) -> Result<InclusionProof> {
        let len = self.len();
        let latest = self
            .latest_checkpoint()
            .and_then(|n| open_note(self.verifier(), n.as_bytes()).ok())
            .map(|vc| vc.size());
        let size = match size {
            Some(s) => s,
            None => latest.filter(|&s| seq < s).unwrap_or(len),
        };
        if size > len || seq >= size {
            return Err(Error::NotFound(format!(
                "seq {seq} in a tree of size {size} (the log has {len} records)"
            )));
        }
        let leaves = self.leaf_hashes(size)?;
        let proof = merkle::inclusion_proof(seq, size, &leaves)
            .map_err(|e| Error::NotFound(e.to_string()))?;
        Ok(InclusionProof {
            seq,
            size,
            record_hash: self.record(seq)?.hash,
            proof,
            root: merkle::root(&leaves),
            checkpoint: self.checkpoint_of_size(size)?,
        })
    }

    /// Consistency proof from the tree of `old_size` to the latest signed checkpoint.
    pub fn prove_consistency(&self, old_size: u64) -> Result<ConsistencyProof> {
        let note = self
            .latest_checkpoint()
            .ok_or_else(|| Error::NotFound("no signed checkpoint yet".into()))?;
        let vc = open_note(self.verifier(), note.as_bytes())
            .map_err(|r| Error::Storage(format!("own checkpoint does not verify: {r}")))?;
        let leaves = self.leaf_hashes(vc.size())?;
        let proof = merkle::consistency_proof(old_size, vc.size(), &leaves)
            .map_err(|e| Error::NotFound(e.to_string()))?;
        Ok(ConsistencyProof {
            old_size,
            new_size: vc.size(),
            proof,
            checkpoint: note,
        })
    }
}

/// Checks an inclusion proof: the path leads from the record hash to the root, and the
/// root is the one signed by `key` in the proof's checkpoint. Returns why not, otherwise.
pub fn verify_inclusion_proof(p: &InclusionProof, key: &Verifier) -> Result<(), String> {
    let note = p
        .checkpoint
        .as_ref()
        .ok_or("the proof carries no signed checkpoint")?;
    let vc = open_note(key, note.as_bytes()).map_err(|r| r.to_string())?;
    if vc.size() != p.size || *vc.root() != p.root {
        return Err("the proof's size or root differs from its signed checkpoint".into());
    }
    let leaf = merkle::leaf_hash(p.record_hash.as_bytes());
    merkle::verify_inclusion(&leaf, p.seq, p.size, &p.proof, &p.root).map_err(|e| e.to_string())
}

/// Checks that the log's latest checkpoint (in `p`) extends the auditor's older signed
/// checkpoint `old_note`, both signed by `key`.
pub fn verify_consistency_proof(
    old_note: &[u8],
    p: &ConsistencyProof,
    key: &Verifier,
) -> Result<(), String> {
    let old = open_note(key, old_note).map_err(|r| format!("older checkpoint: {r}"))?;
    let new =
        open_note(key, p.checkpoint.as_bytes()).map_err(|r| format!("new checkpoint: {r}"))?;
    if old.size() != p.old_size || new.size() != p.new_size {
        return Err("proof sizes differ from the checkpoints".into());
    }
    merkle::verify_consistency(old.size(), new.size(), old.root(), new.root(), &p.proof)
        .map_err(|e| format!("the log does not extend the older checkpoint: {e}"))
}
