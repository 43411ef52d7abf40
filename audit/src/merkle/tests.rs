//! Known-answer tests (transparency-dev/merkle vectors, see
//! `tests/vectors/README.md`), a literal RFC 6962 reference implementation to
//! cross-check the iterative code, and property tests: every proof we produce
//! verifies, and any tampering makes it fail.

use super::*;
use proptest::prelude::*;

#[derive(serde::Deserialize)]
struct Vectors {
    leaf_inputs: Vec<String>,
    node_hashes: Vec<Vec<Hash>>,
    roots: Vec<Hash>,
    compact_trees: Vec<Vec<Hash>>,
    inclusion: Vec<InclusionVector>,
    consistency: Vec<ConsistencyVector>,
}

#[derive(serde::Deserialize)]
struct InclusionVector {
    index: u64,
    size: u64,
    proof: Vec<Hash>,
}

#[derive(serde::Deserialize)]
struct ConsistencyVector {
    old_size: u64,
    new_size: u64,
    proof: Vec<Hash>,
}

fn vectors() -> Vectors {
    let text = include_str!("../../tests/vectors/merkle_rfc6962.json");
    serde_json::from_str(text).expect("vector file parses")
}

fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn vector_leaves(v: &Vectors) -> Vec<Hash> {
    v.leaf_inputs
        .iter()
        .map(|s| leaf_hash(&decode_hex(s)))
        .collect()
}

/// RFC 6962 §2.1 MTH written literally (recursive), for cross-checking.
fn reference_root(d: &[Hash]) -> Hash {
    match d.len() {
        0 => Hash::sha256(b""),
        1 => d[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node_hash(&reference_root(&d[..k]), &reference_root(&d[k..]))
        }
    }
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| leaf_hash(Hash::sha256(&i.to_be_bytes()).as_bytes()))
        .collect()
}

#[test]
fn known_leaf_and_node_hashes() {
    let v = vectors();
    let l = vector_leaves(&v);
    assert_eq!(l, v.node_hashes[0]);
    // Level 1 nodes are hashes of leaf pairs.
    for (i, want) in v.node_hashes[1].iter().enumerate() {
        assert_eq!(node_hash(&l[2 * i], &l[2 * i + 1]), *want);
    }
}

#[test]
fn known_roots_for_every_size() {
    let v = vectors();
    let l = vector_leaves(&v);
    assert_eq!(v.roots[0], empty_root());
    for (size, want) in v.roots.iter().enumerate() {
        assert_eq!(root(&l[..size]), *want, "size {size}");
        assert_eq!(reference_root(&l[..size]), *want, "reference, size {size}");
        assert_eq!(
            Frontier::from_leaves(&l[..size]).root(),
            *want,
            "frontier, size {size}"
        );
    }
}

#[test]
fn known_compact_ranges() {
    let v = vectors();
    let l = vector_leaves(&v);
    let mut f = Frontier::new();
    assert_eq!(f.nodes, v.compact_trees[0]);
    for (i, leaf) in l.iter().enumerate() {
        assert_eq!(f.push(*leaf), Ok(i as u64));
        assert_eq!(f.size(), i as u64 + 1);
        assert_eq!(f.nodes, v.compact_trees[i + 1], "size {}", i + 1);
    }
}

#[test]
fn known_inclusion_proofs() {
    let v = vectors();
    let l = vector_leaves(&v);
    for t in &v.inclusion {
        let got = inclusion_proof(t.index, t.size, &l).expect("in range");
        assert_eq!(got, t.proof, "index {} size {}", t.index, t.size);
        let root = v.roots[t.size as usize];
        verify_inclusion(&l[t.index as usize], t.index, t.size, &t.proof, &root)
            .expect("published proof verifies");
    }
}

#[test]
fn known_consistency_proofs() {
    let v = vectors();
    let l = vector_leaves(&v);
    for t in &v.consistency {
        let got = consistency_proof(t.old_size, t.new_size, &l).expect("in range");
        assert_eq!(got, t.proof, "{} -> {}", t.old_size, t.new_size);
        let (r1, r2) = (v.roots[t.old_size as usize], v.roots[t.new_size as usize]);
        verify_consistency(t.old_size, t.new_size, &r1, &r2, &t.proof)
            .expect("published proof verifies");
    }
}

/// The corruption probes of transparency-dev/merkle's verify_test.go, applied
/// to the published inclusion proofs: each must fail.
#[test]
fn corrupted_known_inclusion_proofs_fail() {
    let v = vectors();
    let l = vector_leaves(&v);
    let some = Hash::from_bytes([0xab; 32]);
    for t in v.inclusion.iter().filter(|t| !t.proof.is_empty()) {
        let (i, n, p) = (t.index, t.size, &t.proof);
        let root = v.roots[n as usize];
        let leaf = l[i as usize];
        let bad = |i: u64, n: u64, leaf: &Hash, p: &[Hash], root: &Hash| {
            verify_inclusion(leaf, i, n, p, root).is_err()
        };
        assert!(bad(i.wrapping_sub(1), n, &leaf, p, &root));
        assert!(bad(i + 1, n, &leaf, p, &root));
        assert!(bad(i ^ 2, n, &leaf, p, &root));
        assert!(bad(i, n * 2, &leaf, p, &root));
        assert!(bad(i, n / 2, &leaf, p, &root));
        assert!(bad(i, n, &some, p, &root));
        assert!(bad(i, n, &leaf, p, &empty_root()));
        assert!(bad(i, n, &leaf, p, &some));
        let mut longer = p.clone();
        longer.push(root);
        assert_eq!(
            verify_inclusion(&leaf, i, n, &longer, &root),
            Err(MerkleError::ProofTooLong)
        );
        let mut front = vec![root];
        front.extend_from_slice(p);
        assert!(bad(i, n, &leaf, &front, &root));
        assert_eq!(
            verify_inclusion(&leaf, i, n, &p[..p.len() - 1], &root),
            Err(MerkleError::ProofTooShort)
        );
        for k in 0..p.len() {
            let mut flipped = p.clone();
            let mut bytes = *flipped[k].as_bytes();
            bytes[0] ^= 8;
            flipped[k] = Hash::from_bytes(bytes);
            assert_eq!(
                verify_inclusion(&leaf, i, n, &flipped, &root),
                Err(MerkleError::RootMismatch)
            );
        }
    }
}

#[test]
fn corrupted_known_consistency_proofs_fail() {
    let v = vectors();
    let some = Hash::from_bytes([0xab; 32]);
    for t in v.consistency.iter().filter(|t| !t.proof.is_empty()) {
        let (m, n, p) = (t.old_size, t.new_size, &t.proof);
        let (r1, r2) = (v.roots[m as usize], v.roots[n as usize]);
        let bad = |m: u64, n: u64, r1: &Hash, r2: &Hash, p: &[Hash]| {
            verify_consistency(m, n, r1, r2, p).is_err()
        };
        assert!(bad(m - 1, n, &r1, &r2, p));
        assert!(bad(m + 1, n, &r1, &r2, p));
        assert!(bad(m ^ 2, n, &r1, &r2, p));
        assert!(bad(m, n * 2, &r1, &r2, p));
        assert!(bad(m, n / 2, &r1, &r2, p));
        assert!(bad(m, n, &some, &r2, p));
        assert!(bad(m, n, &r1, &some, p));
        assert!(bad(m, n, &r2, &r1, p));
        assert_eq!(
            verify_consistency(m, n, &r1, &r2, &[]),
            Err(MerkleError::ProofTooShort)
        );
        for extra in [r1, r2] {
            let mut longer = p.clone();
            longer.push(extra);
            assert!(bad(m, n, &r1, &r2, &longer));
            let mut front = vec![extra];
            front.extend_from_slice(p);
            assert!(bad(m, n, &r1, &r2, &front));
        }
        assert!(bad(m, n, &r1, &r2, &p[..p.len() - 1]));
        for k in 0..p.len() {
            let mut flipped = p.clone();
            let mut bytes = *flipped[k].as_bytes();
            bytes[0] ^= 16;
            flipped[k] = Hash::from_bytes(bytes);
            assert!(bad(m, n, &r1, &r2, &flipped));
        }
    }
}

#[test]
fn consistency_edge_sizes() {
    let l = leaves(5);
    let (r0, r3, r5) = (empty_root(), root(&l[..3]), root(&l));
    // Equal sizes: consistent iff roots equal and the proof is empty.
    assert_eq!(verify_consistency(3, 3, &r3, &r3, &[]), Ok(()));
    assert_eq!(
        verify_consistency(3, 3, &r3, &r5, &[]),
        Err(MerkleError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(3, 3, &r3, &r3, &[r3]),
        Err(MerkleError::ProofNotEmpty)
    );
    // Empty old tree: its root must be the empty root.
    assert_eq!(verify_consistency(0, 5, &r0, &r5, &[]), Ok(()));
    assert_eq!(
        verify_consistency(0, 5, &r3, &r5, &[]),
        Err(MerkleError::OldRootMismatch)
    );
    assert_eq!(
        verify_consistency(0, 0, &r0, &r0, &[r0]),
        Err(MerkleError::ProofNotEmpty)
    );
    // Shrinking is never consistent.
    assert_eq!(
        verify_consistency(5, 3, &r5, &r3, &[]),
        Err(MerkleError::SizeDecreased {
            old_size: 5,
            new_size: 3
        })
    );
    assert_eq!(consistency_proof(3, 3, &l), Ok(vec![]));
    assert_eq!(consistency_proof(0, 5, &l), Ok(vec![]));
    assert_eq!(
        consistency_proof(5, 3, &l),
        Err(MerkleError::SizeDecreased {
            old_size: 5,
            new_size: 3
        })
    );
    assert_eq!(
        consistency_proof(3, 6, &l),
        Err(MerkleError::NotEnoughLeaves {
            size: 6,
            available: 5
        })
    );
}

#[test]
fn inclusion_edge_cases() {
    let l = leaves(3);
    let r = root(&l);
    assert_eq!(
        inclusion_proof(3, 3, &l),
        Err(MerkleError::IndexOutOfRange { index: 3, size: 3 })
    );
    assert_eq!(
        inclusion_proof(0, 4, &l),
        Err(MerkleError::NotEnoughLeaves {
            size: 4,
            available: 3
        })
    );
    assert_eq!(
        verify_inclusion(&l[0], 0, 0, &[], &empty_root()),
        Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
    );
    // A single-leaf tree: the root is the leaf hash and the proof is empty.
    assert_eq!(verify_inclusion(&l[0], 0, 1, &[], &l[0]), Ok(()));
    assert_eq!(
        verify_inclusion(&l[0], 0, 1, &[], &l[1]),
        Err(MerkleError::RootMismatch)
    );
    // Huge index and size do not overflow or panic.
    assert!(verify_inclusion(&l[0], u64::MAX - 1, u64::MAX, &[r; 64], &r).is_err());
    assert!(verify_consistency(u64::MAX - 1, u64::MAX, &r, &r, &[r; 70]).is_err());
}

#[test]
fn hash_hex_and_serde() {
    let h = leaf_hash(b"");
    assert_eq!(
        h.to_string(),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
    assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), Ok(h));
    assert_eq!(Hash::from_hex("00"), Err(MerkleError::BadHex));
    assert_eq!(Hash::from_hex(&"zz".repeat(32)), Err(MerkleError::BadHex));
    assert_eq!(
        Hash::from_slice(&[0; 31]),
        Err(MerkleError::BadHashLength { got: 31 })
    );
    let json = serde_json::to_string(&h).expect("serialise");
    assert_eq!(json, format!("\"{h}\""));
    assert_eq!(serde_json::from_str::<Hash>(&json).expect("parse"), h);
}

#[test]
fn frontier_encodings_roundtrip_and_reject_corruption() {
    let f = Frontier::from_leaves(&leaves(13)); // 13 = 0b1101: three nodes.
    let bytes = f.to_bytes();
    assert_eq!(bytes.len(), 8 + 3 * 32);
    assert_eq!(Frontier::from_bytes(&bytes), Ok(f.clone()));
    assert_eq!(
        Frontier::from_bytes(&bytes[..bytes.len() - 1]),
        Err(MerkleError::BadFrontier)
    );
    assert_eq!(
        Frontier::from_bytes(&bytes[..7]),
        Err(MerkleError::BadFrontier)
    );
    let mut wrong_size = bytes.clone();
    // 0b1110 also has three bits set: the shape is accepted (the binary form
    // has no checksum; the store guards it and checkpoints bind the size).
    wrong_size[7] = 14;
    assert_eq!(Frontier::from_bytes(&wrong_size).map(|g| g.size()), Ok(14));
    wrong_size[7] = 15; // four bits set, three nodes.
    assert_eq!(
        Frontier::from_bytes(&wrong_size),
        Err(MerkleError::BadFrontier)
    );

    let json = serde_json::to_string(&f).expect("serialise");
    assert_eq!(serde_json::from_str::<Frontier>(&json).expect("parse"), f);
    let bad = json.replace("\"size\":13", "\"size\":15");
    assert!(serde_json::from_str::<Frontier>(&bad).is_err());
    assert_eq!(Frontier::default(), Frontier::new());
    assert_eq!(Frontier::new().root(), empty_root());
}

#[test]
fn full_frontier_refuses_to_grow() {
    let node = Hash::from_bytes([1; 32]);
    let mut bytes = u64::MAX.to_be_bytes().to_vec();
    for _ in 0..64 {
        bytes.extend_from_slice(node.as_bytes());
    }
    let mut f = Frontier::from_bytes(&bytes).expect("shape ok");
    assert_eq!(f.push(node), Err(MerkleError::TreeFull));
    assert_eq!(f.size(), u64::MAX);
}

#[test]
fn split_point_is_largest_power_of_two_below() {
    for (n, k) in [
        (2, 1),
        (3, 2),
        (4, 2),
        (5, 4),
        (7, 4),
        (8, 4),
        (9, 8),
        (28937, 16384),
    ] {
        assert_eq!(split_point(n), k, "n = {n}");
    }
    assert_eq!(split_point(u64::MAX), 1 << 63);
}

fn flip(h: &Hash, bit: u8) -> Hash {
    let mut b = *h.as_bytes();
    b[(bit / 8) as usize % 32] ^= 1 << (bit % 8);
    Hash::from_bytes(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frontier_and_root_match_reference(n in 0usize..200) {
        let l = leaves(n);
        let want = reference_root(&l);
        prop_assert_eq!(root(&l), want);
        prop_assert_eq!(Frontier::from_leaves(&l).root(), want);
    }

    #[test]
    fn inclusion_proofs_verify_and_tampering_fails(
        n in 1u64..150, i_seed: u64, which: usize, bit: u8
    ) {
        let l = leaves(n as usize);
        let i = i_seed % n;
        let r = root(&l);
        let p = inclusion_proof(i, n, &l).expect("in range");
        prop_assert_eq!(verify_inclusion(&l[i as usize], i, n, &p, &r), Ok(()));
        // Another leaf, a flipped root, a flipped proof element, a dropped or
        // extra element, another index: all fail.
        prop_assert!(verify_inclusion(&flip(&l[i as usize], bit), i, n, &p, &r).is_err());
        prop_assert!(verify_inclusion(&l[i as usize], i, n, &p, &flip(&r, bit)).is_err());
        if !p.is_empty() {
            let mut q = p.clone();
            let k = which % q.len();
            q[k] = flip(&q[k], bit);
            prop_assert!(verify_inclusion(&l[i as usize], i, n, &q, &r).is_err());
            prop_assert!(verify_inclusion(&l[i as usize], i, n, &p[..p.len() - 1], &r).is_err());
        }
        let mut longer = p.clone();
        longer.push(r);
        prop_assert!(verify_inclusion(&l[i as usize], i, n, &longer, &r).is_err());
        let j = (i + 1 + which as u64 % n) % n;
        if j != i {
            prop_assert!(verify_inclusion(&l[i as usize], j, n, &p, &r).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify_and_tampering_fails(
        n in 1u64..150, m_seed: u64, which: usize, bit: u8
    ) {
        let l = leaves(n as usize);
        let m = m_seed % (n + 1);
        let (r1, r2) = (root(&l[..m as usize]), root(&l));
        let p = consistency_proof(m, n, &l).expect("in range");
        prop_assert_eq!(verify_consistency(m, n, &r1, &r2, &p), Ok(()));
        prop_assert!(verify_consistency(m, n, &flip(&r1, bit), &r2, &p).is_err());
        if m > 0 {
            prop_assert!(verify_consistency(m, n, &r1, &flip(&r2, bit), &p).is_err());
        }
        if !p.is_empty() {
            let mut q = p.clone();
            let k = which % q.len();
            q[k] = flip(&q[k], bit);
            prop_assert!(verify_consistency(m, n, &r1, &r2, &q).is_err());
            prop_assert!(verify_consistency(m, n, &r1, &r2, &p[..p.len() - 1]).is_err());
            let mut longer = p.clone();
            longer.push(r2);
            prop_assert!(verify_consistency(m, n, &r1, &r2, &longer).is_err());
        }
        // A log that rewrote any leaf below m is not consistent with r1.
        if m > 0 {
            let mut forked = l.clone();
            let k = which % m as usize;
            forked[k] = flip(&forked[k], bit);
            let fr2 = root(&forked);
            let fp = consistency_proof(m, n, &forked).expect("in range");
            prop_assert!(verify_consistency(m, n, &r1, &fr2, &fp).is_err());
        }
    }

    #[test]
    fn frontier_bytes_roundtrip(n in 0usize..300) {
        let f = Frontier::from_leaves(&leaves(n));
        prop_assert_eq!(Frontier::from_bytes(&f.to_bytes()), Ok(f));
    }

    #[test]
    fn frontier_from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Frontier::from_bytes(&bytes);
    }
}
