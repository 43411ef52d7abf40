//! RFC 6962 Merkle tree over the audit log's record hashes.
//!
//! # What this does
//! - Hashing exactly as RFC 6962 §2.1 (and RFC 9162 §2.1.1) with SHA-256:
//!   `MTH({}) = SHA-256()`, leaf hash `SHA-256(0x00 || entry)`, interior node
//!   `SHA-256(0x01 || left || right)`, split at the largest power of two
//!   strictly smaller than the number of leaves.
//! - In the audit log the *entry* of leaf `seq` is the 32-byte record hash of
//!   the hash chain, so its leaf hash is `SHA-256(0x00 || record_hash)`: the
//!   same `0x00` domain tag as the chain but a different input length, and a
//!   leaf is never confusable with an interior node (`0x01`).
//! - [`Frontier`]: the O(log n) state needed to append leaves and compute the
//!   root without keeping the leaves (the "compact range" `[0, size)`).
//!   It is serialisable (serde and a fixed binary form) so the store can
//!   persist it next to its chain head.
//! - Proof generation from the full list of leaf hashes (RFC 6962 §2.1.1
//!   `PATH` and §2.1.2 `PROOF`) and proof verification following the
//!   algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 step by step.
//!
//! # What this does NOT do
//! No storage, no I/O, no signing: leaves come from the caller, checkpoints
//! and their signatures live in [`crate::note`]. Proof generation is O(n) in
//! the tree size (it rehashes the subtrees it needs); that is the price of not
//! storing interior nodes, and fine for an offline `prove` command.
//!
//! # Invariants
//! - [`Hash`](struct@Hash) equality is constant time, so comparing a computed root with an
//!   attacker-supplied one leaks nothing about where they differ.
//! - A [`Frontier`] always holds exactly one subtree root per set bit of its
//!   size (checked when decoding), so `root()` cannot be computed from a
//!   malformed state.
//! - No function here panics on untrusted input: indices, sizes and proofs
//!   are checked and reported through [`MerkleError`].

use std::fmt;

use ring::digest::{Context, SHA256, digest};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// Domain-separation prefix of a leaf hash (RFC 6962 §2.1).
pub const LEAF_HASH_PREFIX: u8 = 0x00;
/// Domain-separation prefix of an interior node hash (RFC 6962 §2.1).
pub const NODE_HASH_PREFIX: u8 = 0x01;
/// Length of a SHA-256 digest in bytes.
pub const HASH_LEN: usize = 32;

/// A SHA-256 digest: a leaf hash, node hash or tree root.
///
/// Equality is constant time. `Display` and serde use lowercase hex.
#[derive(Clone, Copy)]
pub struct Hash([u8; HASH_LEN]);

impl Hash {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; HASH_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Parses exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, MerkleError> {
        let arr: [u8; HASH_LEN] = bytes
            .try_into()
            .map_err(|_| MerkleError::BadHashLength { got: bytes.len() })?;
        Ok(Self(arr))
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Self, MerkleError> {
        let s = s.as_bytes();
        if s.len() != 2 * HASH_LEN {
            return Err(MerkleError::BadHex);
        }
        let mut out = [0u8; HASH_LEN];
        for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Ok(Self(out))
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// SHA-256 of `data` (no domain prefix): used for the empty tree root and
    /// available to callers that need a plain digest of the same type.
    pub fn sha256(data: &[u8]) -> Self {
        Self::from_digest(digest(&SHA256, data))
    }

    fn from_digest(d: ring::digest::Digest) -> Self {
        let mut out = [0u8; HASH_LEN];
        // INVARIANT: SHA-256 digests are always 32 bytes long.
        out.copy_from_slice(d.as_ref());
        Self(out)
    }
}

fn hex_value(c: u8) -> Result<u8, MerkleError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(MerkleError::BadHex),
    }
}

impl PartialEq for Hash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Hash {}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a Merkle operation or proof check failed.
///
/// Verification errors mean the proof, the sizes or the roots given do not
/// match: a corrupted or truncated proof, a log that forked, or an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// A leaf index at or past the tree size (caller error or bad proof request).
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// Asked for a tree larger than the leaves supplied.
    #[error("tree size {size} exceeds the {available} leaves available")]
    NotEnoughLeaves { size: u64, available: u64 },
    /// A consistency check from a larger tree to a smaller one: a log that
    /// shrank (truncation) or swapped arguments.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizeDecreased { old_size: u64, new_size: u64 },
    /// The proof has more hashes than the tree shape allows.
    #[error("proof is too long for this index and tree size")]
    ProofTooLong,
    /// The proof has fewer hashes than the tree shape requires.
    #[error("proof is too short for this index and tree size")]
    ProofTooShort,
    /// A proof was given where none is expected (equal sizes or empty old tree).
    #[error("expected an empty proof")]
    ProofNotEmpty,
    /// The proof does not lead to the given root: the leaf is not in that tree.
    #[error("computed root does not match the expected root")]
    RootMismatch,
    /// The consistency proof does not reproduce the old root.
    #[error("consistency proof does not match the old root")]
    OldRootMismatch,
    /// The consistency proof does not reproduce the new root.
    #[error("consistency proof does not match the new root")]
    NewRootMismatch,
    /// A hash was not exactly 32 bytes.
    #[error("hash must be 32 bytes, got {got}")]
    BadHashLength { got: usize },
    /// A hash was not 64 hex digits.
    #[error("hash must be 64 hex digits")]
    BadHex,
    /// A persisted frontier does not match its size (corrupted state).
    #[error("malformed frontier encoding")]
    BadFrontier,
    /// The tree cannot grow past 2^64 - 1 leaves.
    #[error("tree is full")]
    TreeFull,
}

/// The root of the empty tree: `SHA-256("")` (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Hash::sha256(&[])
}

/// Leaf hash `SHA-256(0x00 || entry)` (RFC 6962 §2.1). In the audit log
/// `entry` is the 32-byte record hash.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[LEAF_HASH_PREFIX]);
    ctx.update(entry);
    Hash::from_digest(ctx.finish())
}

/// Interior node hash `SHA-256(0x01 || left || right)` (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[NODE_HASH_PREFIX]);
    ctx.update(&left.0);
    ctx.update(&right.0);
    Hash::from_digest(ctx.finish())
}

/// `MTH(D[n])` of RFC 6962 §2.1 over already-hashed leaves (see
/// [`leaf_hash`]). Any size, including 0 (the empty root). O(n) time,
/// O(log n) memory.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    let mut f = Frontier::new();
    for h in leaf_hashes {
        // INVARIANT: a slice cannot hold 2^64 elements, so the tree never fills.
        let _ = f.push(*h);
    }
    f.root()
}

/// Largest power of two strictly smaller than `n` (RFC 6962's `k`), n >= 2.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

fn leaves_for(size: u64, leaves: &[Hash]) -> Result<&[Hash], MerkleError> {
    let available = leaves.len() as u64;
    if size > available {
        return Err(MerkleError::NotEnoughLeaves { size, available });
    }
    // INVARIANT: size <= leaves.len() <= usize::MAX, so the cast is lossless.
    Ok(&leaves[..size as usize])
}

/// Inclusion proof (audit path) of leaf `index` in the tree made of the first
/// `size` leaf hashes: `PATH(m, D[n])` of RFC 6962 §2.1.1, leaf to root order.
pub fn inclusion_proof(index: u64, size: u64, leaves: &[Hash]) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let d = leaves_for(size, leaves)?;
    let mut proof = Vec::new();
    path(index as usize, d, &mut proof);
    Ok(proof)
}

/// RFC 6962 §2.1.1, with `m < n = d.len()`. Pushes the deepest sibling first.
fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    let n = d.len();
    // PATH(0, {d(0)}) = {}
    if n <= 1 {
        return;
    }
    let k = split_point(n as u64) as usize;
    if m < k {
        // PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        // PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
}

/// Consistency proof between the trees of the first `old_size` and
/// `new_size` leaf hashes: `PROOF(m, D[n])` of RFC 6962 §2.1.2.
///
/// Off-spec: for `old_size == 0` or `old_size == new_size` (where RFC 6962
/// defines no proof) this returns an empty proof, which
/// [`verify_consistency`] accepts for those sizes only.
pub fn consistency_proof(
    old_size: u64,
    new_size: u64,
    leaves: &[Hash],
) -> Result<Vec<Hash>, MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizeDecreased { old_size, new_size });
    }
    let d = leaves_for(new_size, leaves)?;
    let mut proof = Vec::new();
    if old_size > 0 && old_size < new_size {
        // PROOF(m, D[n]) = SUBPROOF(m, D[n], true)
        subproof(old_size as usize, d, true, &mut proof);
    }
    Ok(proof)
}

/// RFC 6962 §2.1.2 `SUBPROOF(m, D[n], b)`, with `0 < m <= n = d.len()`.
fn subproof(m: usize, d: &[Hash], b: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        // SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
        if !b {
            out.push(root(d));
        }
        return;
    }
    let k = split_point(n as u64) as usize;
    if m <= k {
        // SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
        subproof(m, &d[..k], b, out);
        out.push(root(&d[k..]));
    } else {
        // SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves whose
/// root is `root`, following RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    // 1. If leaf_index is greater than or equal to tree_size, fail.
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    // 2. Set fn to leaf_index and sn to tree_size - 1.
    let (mut fn_, mut sn) = (index, size - 1);
    // 3. Set r to hash.
    let mut r = *leaf_hash;
    // 4. For each value p in the inclusion_path array:
    for p in proof {
        // a. If sn is 0, then stop the iteration and fail.
        if sn == 0 {
            return Err(MerkleError::ProofTooLong);
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn_ & 1 == 1 || fn_ == sn {
            // i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, &r);
            // ii. If LSB(fn) is not set, then right-shift both fn and sn
            //     equally until either LSB(fn) is set or fn is 0.
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            // Otherwise: i. Set r to HASH(0x01 || r || p).
            r = node_hash(&r, p);
        }
        // c. Finally, right-shift both fn and sn one time.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. Compare sn to 0. Compare r against the root_hash. If sn is equal to
    //    0 and r and the root_hash are equal, inclusion is proven.
    if sn != 0 {
        return Err(MerkleError::ProofTooShort);
    }
    if r != *root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the
/// tree of `old_size` leaves with root `old_root`, following RFC 9162
/// §2.1.4.2.
///
/// Off-spec (as transparency-dev/merkle does): RFC 9162 only covers
/// `0 < old_size < new_size`. Here equal sizes are consistent iff the proof is
/// empty and the roots are equal, and an empty old tree is consistent with
/// any new tree iff the proof is empty and `old_root` is the empty root.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizeDecreased { old_size, new_size });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(MerkleError::ProofNotEmpty);
        }
        if old_size == 0 {
            return if *old_root == empty_root() {
                Ok(())
            } else {
                Err(MerkleError::OldRootMismatch)
            };
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    // Now 0 < first < second.
    // 1. If consistency_path is an empty array, stop and fail.
    if proof.is_empty() {
        return Err(MerkleError::ProofTooShort);
    }
    // 2. If first is an exact power of 2, then prepend first_hash to the
    //    consistency_path array.
    let path: Vec<&Hash> = if old_size.is_power_of_two() {
        std::iter::once(old_root).chain(proof).collect()
    } else {
        proof.iter().collect()
    };
    // 3. Set fn to first - 1 and sn to second - 1.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    // 4. If LSB(fn) is set, then right-shift both fn and sn equally until
    //    LSB(fn) is not set.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. Set both fr and sr to the first value in the consistency_path array.
    // INVARIANT: `path` has at least one element (checked in step 1 or
    // prepended in step 2).
    let (mut fr, mut sr) = (*path[0], *path[0]);
    // 6. For each subsequent value c in the consistency_path array:
    for c in &path[1..] {
        // a. If sn is 0, then stop the iteration and fail.
        if sn == 0 {
            return Err(MerkleError::ProofTooLong);
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn_ & 1 == 1 || fn_ == sn {
            // i. Set fr to HASH(0x01 || c || fr). Set sr to HASH(0x01 || c || sr).
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            // ii. If LSB(fn) is not set, then right-shift both fn and sn
            //     equally until either LSB(fn) is set or fn is 0.
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            // Otherwise: i. Set sr to HASH(0x01 || sr || c).
            sr = node_hash(&sr, c);
        }
        // c. Finally, right-shift both fn and sn one time.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7. Verify that fr equals first_hash, sr equals second_hash, and sn is 0.
    if sn != 0 {
        return Err(MerkleError::ProofTooShort);
    }
    if fr != *old_root {
        return Err(MerkleError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(MerkleError::NewRootMismatch);
    }
    Ok(())
}

/// The right edge of a tree of `size` leaves: the roots of its maximal
/// perfect subtrees, largest (leftmost) first. Enough to append leaves and
/// compute the root in O(log n) without keeping the leaves.
///
/// Serialises (serde) as `{"size": n, "nodes": ["<hex>", ...]}`; a fixed
/// binary form is available through [`Frontier::to_bytes`] /
/// [`Frontier::from_bytes`]. Both decoders check the invariant below.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(try_from = "FrontierRepr", into = "FrontierRepr")]
pub struct Frontier {
    size: u64,
    // INVARIANT: nodes.len() == size.count_ones(); nodes[i] is the root of
    // the perfect subtree for the i-th set bit of `size`, most significant
    // bit first.
    nodes: Vec<Hash>,
}

#[derive(Serialize, Deserialize)]
struct FrontierRepr {
    size: u64,
    nodes: Vec<Hash>,
}

impl TryFrom<FrontierRepr> for Frontier {
    type Error = MerkleError;

    fn try_from(r: FrontierRepr) -> Result<Self, MerkleError> {
        if r.nodes.len() != r.size.count_ones() as usize {
            return Err(MerkleError::BadFrontier);
        }
        Ok(Frontier {
            size: r.size,
            nodes: r.nodes,
        })
    }
}

impl From<Frontier> for FrontierRepr {
    fn from(f: Frontier) -> Self {
        FrontierRepr {
            size: f.size,
            nodes: f.nodes,
        }
    }
}

impl Frontier {
    /// The empty tree.
    pub const fn new() -> Self {
        Frontier {
            size: 0,
            nodes: Vec::new(),
        }
    }

    /// Builds the frontier of a tree from its leaf hashes.
    pub fn from_leaves(leaf_hashes: &[Hash]) -> Self {
        let mut f = Frontier::new();
        for h in leaf_hashes {
            // INVARIANT: a slice cannot hold 2^64 elements.
            let _ = f.push(*h);
        }
        f
    }

    /// Number of leaves.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash (see [`leaf_hash`]) and returns its index.
    pub fn push(&mut self, leaf_hash: Hash) -> Result<u64, MerkleError> {
        let index = self.size;
        let new_size = index.checked_add(1).ok_or(MerkleError::TreeFull)?;
        // Merge equal-sized subtrees: one per trailing 1 bit of the old size.
        let mut node = leaf_hash;
        let mut bits = index;
        while bits & 1 == 1 {
            // INVARIANT: each set bit of `index` has a node, so pop succeeds.
            let Some(left) = self.nodes.pop() else {
                return Err(MerkleError::BadFrontier);
            };
            node = node_hash(&left, &node);
            bits >>= 1;
        }
        self.nodes.push(node);
        self.size = new_size;
        Ok(index)
    }

    /// `MTH` of the current tree (the empty root for size 0). O(log n).
    pub fn root(&self) -> Hash {
        // RFC 6962 splits at the largest power of two, so the root hashes the
        // perfect subtrees together from the right.
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// Fixed binary form: `size` as u64 big-endian, then the 32-byte nodes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + HASH_LEN * self.nodes.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for n in &self.nodes {
            out.extend_from_slice(&n.0);
        }
        out
    }

    /// Parses [`Frontier::to_bytes`], checking that the number of nodes
    /// matches the size.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MerkleError> {
        let (size_bytes, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or(MerkleError::BadFrontier)?;
        let size = u64::from_be_bytes(*size_bytes);
        if rest.len() != HASH_LEN * size.count_ones() as usize {
            return Err(MerkleError::BadFrontier);
        }
        let nodes = rest
            .chunks_exact(HASH_LEN)
            .map(Hash::from_slice)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Frontier { size, nodes })
    }
}

#[cfg(test)]
mod tests;
