use airlock_bundle::{BundleError as E, Limits};

use crate::common::{Appliance, Bundle, Raw, now, sha};

/// Unsigned bundle: zero trusted signatures.
#[test]
fn unsigned_bundle_is_below_threshold() {
    let mut app = Appliance::new();
    let b = Bundle::new(1).to_bytes();
    app.assert_rejected(&b, |e| {
        matches!(
            e,
            E::BelowThreshold {
                valid: 0,
                threshold: 2
            }
        )
    });
}

/// Signed only by a key the policy does not trust.
#[test]
fn untrusted_signer_is_not_counted() {
    let mut app = Appliance::new();
    let b = Bundle::new(1).signed_by(&[&app.keys.stranger]).to_bytes();
    app.assert_rejected(&b, |e| matches!(e, E::BelowThreshold { valid: 0, .. }));
    let b = Bundle::new(1)
        .signed_by(&[&app.keys.a, &app.keys.stranger])
        .to_bytes();
    app.assert_rejected(&b, |e| matches!(e, E::BelowThreshold { valid: 1, .. }));
}

/// k-1 of k signatures.
#[test]
fn one_signature_short_of_threshold() {
    let mut app = Appliance::new();
    let b = Bundle::new(1).signed_by(&[&app.keys.b]).to_bytes();
    app.assert_rejected(&b, |e| {
        matches!(
            e,
            E::BelowThreshold {
                valid: 1,
                threshold: 2
            }
        )
    });
}

/// The same key twice counts once.
#[test]
fn same_key_twice_counts_once() {
    let mut app = Appliance::new();
    let b = Bundle::new(1)
        .signed_by(&[&app.keys.a, &app.keys.a])
        .to_bytes();
    app.assert_rejected(&b, |e| {
        matches!(
            e,
            E::BelowThreshold {
                valid: 1,
                threshold: 2
            }
        )
    });
}

/// One payload byte flipped after signing.
#[test]
fn payload_byte_flipped_is_digest_mismatch() {
    let mut app = Appliance::new();
    let mut b = app.good(1);
    b.payload[0].data[100] ^= 0x01;
    app.assert_rejected(
        &b.to_bytes(),
        |e| matches!(e, E::DigestMismatch { path, .. } if path == "model.gguf"),
    );
}

/// The manifest edited after signing (sequence raised).
#[test]
fn manifest_edited_after_signing_is_bad_signature() {
    let mut app = Appliance::new();
    let mut b = app.good(1);
    let text = String::from_utf8(b.manifest_bytes.clone()).expect("utf-8");
    b.manifest_bytes = text
        .replace("\"sequence\": 1", "\"sequence\": 9")
        .into_bytes();
    assert_ne!(b.manifest_bytes, b.manifest.to_bytes(), "the edit happened");
    app.assert_rejected(
        &b.to_bytes(),
        |e| matches!(e, E::BadSignature { name, .. } if name == "alice"),
    );
}

/// Expired bundle.
#[test]
fn expired_bundle_is_refused() {
    let mut app = Appliance::new();
    let b = Bundle::new(1)
        .with_manifest(|m| m.expires = Some(now() - time::Duration::seconds(1)))
        .signed_by(&[&app.keys.a, &app.keys.b]);
    app.assert_rejected(&b.to_bytes(), |e| matches!(e, E::Expired { .. }));
}

/// No `expires` while the policy requires one.
#[test]
fn missing_expiry_is_refused_when_required() {
    let mut app = Appliance::new();
    let b = Bundle::new(1)
        .with_manifest(|m| m.expires = None)
        .signed_by(&[&app.keys.a, &app.keys.b]);
    app.assert_rejected(&b.to_bytes(), |e| matches!(e, E::NoExpiry));
}

/// A name the policy does not allow, validly signed.
#[test]
fn name_not_allowed_is_refused() {
    let mut app = Appliance::new();
    let b = Bundle::new(1)
        .with_manifest(|m| m.name = "other-model".into())
        .signed_by(&[&app.keys.a, &app.keys.b]);
    app.assert_rejected(
        &b.to_bytes(),
        |e| matches!(e, E::NameNotAllowed(n) if n == "other-model"),
    );
}

/// Sequence equal to and lower than the installed one.
#[test]
fn rollback_equal_or_lower_sequence_is_refused() {
    let mut app = Appliance::new();
    app.install_good(5);
    for seq in [5, 4] {
        let b = Bundle::new(seq)
            .with_manifest(|m| m.version = semver::Version::new(2, 0, seq))
            .signed_by(&[&app.keys.a, &app.keys.b]);
        app.assert_rejected(
            &b.to_bytes(),
            |e| matches!(e, E::Rollback { sequence, high_water: 5, .. } if *sequence == seq),
        );
    }
}

/// Rollback after the old model's directory was deleted: the mark survives.
#[test]
fn rollback_refused_after_model_deleted() {
    let mut app = Appliance::new();
    app.install_good(5);
    std::fs::remove_dir_all(app.state().join("models")).expect("delete models");
    let b = app.good(3).to_bytes();
    app.assert_rejected(&b, |e| {
        matches!(
            e,
            E::Rollback {
                sequence: 3,
                high_water: 5,
                ..
            }
        )
    });
}

fn with_entry(app: &Appliance, raw: Raw) -> Vec<u8> {
    let mut b = app.good(1);
    b.payload.insert(1, raw);
    b.to_bytes()
}

/// `../x` in the archive.
#[test]
fn parent_directory_path_is_refused() {
    let mut app = Appliance::new();
    let b = with_entry(&app, Raw::file("../x", b"evil".to_vec()));
    app.assert_rejected(
        &b,
        |e| matches!(e, E::UnsafePath { path, reason } if path == "../x" && reason.contains("..")),
    );
    assert!(!app.state().join("models/x").exists() && !app.state().join("x").exists());
}

/// Absolute path in the archive.
#[test]
fn absolute_path_is_refused() {
    let mut app = Appliance::new();
    let b = with_entry(&app, Raw::file("/tmp/airlock-evil", b"evil".to_vec()));
    app.assert_rejected(&b, |e| {
        matches!(
            e,
            E::UnsafePath {
                reason: "absolute path",
                ..
            }
        )
    });
    assert!(!std::path::Path::new("/tmp/airlock-evil").exists());
}

/// A signed manifest that itself lists `../x` is refused too.
#[test]
fn manifest_with_traversal_path_is_refused() {
    let mut app = Appliance::new();
    let b = Bundle::new(1)
        .with_manifest(|m| m.files[1].path = "../LICENSE".into())
        .signed_by(&[&app.keys.a, &app.keys.b]);
    app.assert_rejected(&b.to_bytes(), |e| matches!(e, E::UnsafePath { .. }));
}

fn link(name: &str, flag: u8, target: &str) -> Raw {
    Raw {
        typeflag: flag,
        link: Some(target.as_bytes().to_vec()),
        ..Raw::file(name, vec![])
    }
}

/// A symlink entry (named like a listed file).
#[test]
fn symlink_entry_is_refused() {
    let mut app = Appliance::new();
    let mut b = app.good(1);
    b.payload[1] = link("LICENSE", b'2', "/etc/passwd");
    app.assert_rejected(&b.to_bytes(), |e| {
        matches!(
            e,
            E::LinkEntry {
                kind: "symlink",
                ..
            }
        )
    });
}

/// A hardlink entry.
#[test]
fn hardlink_entry_is_refused() {
    let mut app = Appliance::new();
    let mut b = app.good(1);
    b.payload[1] = link("LICENSE", b'1', "model.gguf");
    app.assert_rejected(&b.to_bytes(), |e| {
        matches!(
            e,
            E::LinkEntry {
                kind: "hardlink",
                ..
            }
        )
    });
}

/// Device and FIFO entries.
#[test]
fn device_and_fifo_entries_are_refused() {
    let mut app = Appliance::new();
    for (flag, kind) in [
        (b'3', "character device"),
        (b'4', "block device"),
        (b'6', "FIFO"),
    ] {
        let b = with_entry(
            &app,
            Raw {
                typeflag: flag,
                ..Raw::file("LICENSE", vec![])
            },
        );
        app.assert_rejected(
            &b,
            |e| matches!(e, E::SpecialEntry { kind: k, .. } if k == kind),
        );
    }
}

/// The same file name twice (the second would replace the verified first).
#[test]
fn duplicate_file_name_is_refused() {
    let mut app = Appliance::new();
    let mut b = app.good(1);
    let again = b.payload[1].clone();
    b.payload.push(again);
    app.assert_rejected(
        &b.to_bytes(),
        |e| matches!(e, E::DuplicateFile(p) if p == "LICENSE"),
    );
}

/// A payload file the manifest does not list.
#[test]
fn extra_file_is_refused() {
    let mut app = Appliance::new();
    let mut b = app.good(1);
    b.payload
        .push(Raw::file("backdoor.so", b"\x7fELF".to_vec()));
    app.assert_rejected(
        &b.to_bytes(),
        |e| matches!(e, E::UnlistedFile(p) if p == "backdoor.so"),
    );
}

/// A listed file missing from the archive.
#[test]
fn missing_file_is_refused() {
    let mut app = Appliance::new();
    let mut b = app.good(1);
    b.payload.pop();
    app.assert_rejected(
        &b.to_bytes(),
        |e| matches!(e, E::MissingFile(p) if p == "LICENSE"),
    );
}

/// Tar cut in the middle of the model, and cut right before the end marker.
#[test]
fn truncated_archive_is_refused() {
    let mut app = Appliance::new();
    let full = app.good(1).to_bytes();
    app.assert_rejected(&full[..2048], |e| matches!(e, E::Truncated(_)));
    app.assert_rejected(&full[..full.len() - 1024], |e| matches!(e, E::Truncated(_)));
    app.assert_rejected(&full[..full.len() - 512], |e| matches!(e, E::Truncated(_)));
}

/// Non-zero bytes after the end-of-archive marker.
#[test]
fn trailing_garbage_is_refused() {
    let mut app = Appliance::new();
    let mut b = app.good(1);
    b.tail.extend_from_slice(b"#!/bin/sh\nrm -rf /\n");
    app.assert_rejected(&b.to_bytes(), |e| matches!(e, E::TrailingData(_)));
}

/// A 2 MiB manifest: refused from its header, before it is read.
#[test]
fn huge_manifest_is_refused() {
    let mut app = Appliance::new();
    let mut b = app.good(1);
    b.manifest_bytes.resize(2 << 20, b' ');
    app.assert_rejected(&b.to_bytes(), |e| {
        matches!(e, E::ManifestTooLarge { size, limit } if *size == 2 << 20 && *limit == 1 << 20)
    });
}

/// More than 64 files, all listed and signed.
#[test]
fn too_many_files_is_refused() {
    let mut app = Appliance::new();
    let b = Bundle::new(1).with_manifest(|m| {
        for i in 0..64 {
            m.files.push(airlock_bundle::FileEntry {
                path: format!("f{i}"),
                size: 0,
                sha256: sha(b""),
            });
        }
    });
    let b = b.signed_by(&[&app.keys.a, &app.keys.b]);
    app.assert_rejected(&b.to_bytes(), |e| {
        matches!(
            e,
            E::TooManyFiles {
                count: 66,
                limit: 64
            }
        )
    });
}

/// "Zip bomb": a tar header declaring far more than the signed size is refused
/// before a byte is written; a signed huge size with short data ends as truncated.
#[test]
fn declared_size_far_above_real_is_refused() {
    let mut app = Appliance::new();
    let mut b = app.good(1);
    b.payload[1].declared = Some(1 << 40);
    app.assert_rejected(
        &b.to_bytes(),
        |e| matches!(e, E::SizeMismatch { found, .. } if *found == 1 << 40),
    );
    let b = Bundle::new(1)
        .with_manifest(|m| m.files[1].size = 10 << 30)
        .signed_by(&[&app.keys.a, &app.keys.b]);
    let mut b = b;
    b.payload[1].declared = Some(10 << 30);
    app.assert_rejected(&b.to_bytes(), |e| matches!(e, E::Truncated(_)));
}

/// The first entry is not the manifest.
#[test]
fn payload_before_manifest_is_refused() {
    let mut app = Appliance::new();
    let good = app.good(1);
    let mut bytes = Vec::new();
    good.payload[0].write(&mut bytes);
    bytes.extend_from_slice(&good.to_bytes());
    app.assert_rejected(
        &bytes,
        |e| matches!(e, E::Layout { index: 0, found, .. } if found == "model.gguf"),
    );
}

/// A signed bundle whose `.gguf` is not a GGUF, or of another architecture.
#[test]
fn non_gguf_or_wrong_architecture_is_refused() {
    let mut app = Appliance::new();
    let junk = b"not a gguf file at all".to_vec();
    let mut b = Bundle::new(1).with_manifest(|m| {
        m.files[0].size = junk.len() as u64;
        m.files[0].sha256 = sha(&junk);
    });
    b.payload[0].data = junk;
    let b = b.signed_by(&[&app.keys.a, &app.keys.b]);
    app.assert_rejected(
        &b.to_bytes(),
        |e| matches!(e, E::Model { reason, .. } if reason.contains("not a valid GGUF")),
    );
    let b = Bundle::new(1)
        .with_manifest(|m| m.architecture = "qwen2".into())
        .signed_by(&[&app.keys.a, &app.keys.b]);
    app.assert_rejected(
        &b.to_bytes(),
        |e| matches!(e, E::Model { reason, .. } if reason.contains("qwen2")),
    );
}

/// Limits are applied as given (a lowered manifest limit).
#[test]
fn limits_are_configurable() {
    let mut app = Appliance::new();
    let b = app.good(1).to_bytes();
    let limits = Limits {
        max_manifest_bytes: 100,
        ..Limits::default()
    };
    app.assert_rejected_with(&b, &limits, |e| {
        matches!(e, E::ManifestTooLarge { limit: 100, .. })
    });
}

/// Law: flipping any single bit (low or high) of the manifest, of `signatures.json` or
/// of any payload byte makes verification fail, checked at every byte of a whole bundle.
#[test]
fn any_flip_in_signed_signature_or_payload_bytes_is_rejected() {
    let app = Appliance::new();
    let b = app.good(1);
    let bytes = b.to_bytes();
    let sigs = airlock_bundle::signatures_to_bytes(&b.signatures);
    let mut lens = vec![b.manifest_bytes.len(), sigs.len()];
    lens.extend(b.payload.iter().map(|e| e.data.len()));
    let mut pos = 0;
    let mut checked = 0;
    let verify = |data: &[u8]| {
        airlock_bundle::verify_stream(data, &app.trust, &Limits::default(), now(), |_| Ok(None))
    };
    verify(&bytes).expect("the unflipped bundle verifies");
    for len in lens {
        let start = pos + 512;
        for i in start..start + len {
            for bit in [0x01u8, 0x80] {
                let mut m = bytes.clone();
                m[i] ^= bit;
                assert!(verify(&m).is_err(), "flip {bit:#x} at byte {i} accepted");
                checked += 1;
            }
        }
        pos = start + len.div_ceil(512) * 512;
    }
    assert!(checked > 2000, "{checked}");
}
