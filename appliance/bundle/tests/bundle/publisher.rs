use airlock_bundle::{
    BundleError as E, CreateOptions, Limits, SigningKey, create_bundle, read_header, sign_bundle,
    verify_stream,
};

use crate::common::{Keys, gguf_bytes, now};

fn create(dir: &std::path::Path) -> std::path::PathBuf {
    let model = dir.join("tiny.gguf");
    std::fs::write(&model, gguf_bytes(0.5)).expect("write model");
    let readme = dir.join("README");
    std::fs::write(&readme, "a tiny model\n").expect("readme");
    let out = dir.join("tiny-llama-1.0.0.airlock");
    let opts = CreateOptions {
        name: "tiny-llama".into(),
        version: semver::Version::new(1, 0, 0),
        sequence: 1,
        expires: Some(now() + time::Duration::days(30)),
        license: None,
        model,
        extra: vec![readme],
        created: now(),
    };
    let mut seen = 0;
    let m = create_bundle(&opts, &out, &mut |n| seen += n).expect("create");
    assert_eq!(m.architecture, "llama", "read from the GGUF header");
    assert_eq!(m.license, "apache-2.0", "read from the GGUF metadata");
    assert_eq!(
        seen,
        2 * m.files.iter().map(|f| f.size).sum::<u64>(),
        "progress covers hash + copy"
    );
    out
}

/// create → sign twice (two keys) → verify against 2-of-2; a second signature by the
/// same key is refused; the signed file still verifies after each step.
#[test]
fn create_sign_verify_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Keys::new();
    let out = create(dir.path());
    let verify = |threshold| {
        verify_stream(
            std::fs::File::open(&out).expect("open"),
            &keys.trust(threshold),
            &Limits::default(),
            now(),
            |_| Ok(None),
        )
    };
    assert!(matches!(verify(1), Err(E::BelowThreshold { valid: 0, .. })));
    sign_bundle(&out, &keys.a).expect("sign a");
    verify(1).expect("1 of 2");
    assert!(matches!(verify(2), Err(E::BelowThreshold { valid: 1, .. })));
    let err = sign_bundle(&out, &keys.a).expect_err("twice");
    assert!(matches!(err, E::DuplicateSignature(_)), "{err}");
    sign_bundle(&out, &keys.b).expect("sign b");
    let v = verify(2).expect("2 of 2");
    assert_eq!(v.header().signers().len(), 2);
    let (signed, _) = read_header(&out, &Limits::default()).expect("header");
    assert_eq!(signed.signatures.len(), 2);
}

/// `create` refuses a file that is not a GGUF.
#[test]
fn create_refuses_non_gguf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("x.gguf");
    std::fs::write(&model, b"GGUF but not really").expect("write");
    let opts = CreateOptions {
        name: "x".into(),
        version: semver::Version::new(1, 0, 0),
        sequence: 1,
        expires: None,
        license: Some("MIT".into()),
        model,
        extra: vec![],
        created: now(),
    };
    let err =
        create_bundle(&opts, &dir.path().join("x.airlock"), &mut |_| {}).expect_err("not gguf");
    assert!(matches!(err, E::Model { .. }), "{err}");
    assert!(!dir.path().join("x.airlock").exists());
}

/// Key files: PEM private key round trip, public key base64.
#[test]
fn key_files_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, pem) = SigningKey::generate().expect("generate");
    let path = dir.path().join("k.key");
    std::fs::write(&path, pem).expect("write");
    let again = SigningKey::from_file(&path).expect("read");
    assert_eq!(again.public(), key.public());
    let pubkey =
        airlock_bundle::PublicKey::from_base64(&key.public().to_base64(), "k.pub").expect("pub");
    assert_eq!(pubkey.id(), key.public().id());
}
