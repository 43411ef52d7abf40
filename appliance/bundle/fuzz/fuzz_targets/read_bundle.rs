//! Arbitrary bytes through the whole verify-before-unpack reader (payload discarded):
//! it must return an error or a verified bundle, never panic, hang or allocate beyond
//! its limits. The trust root is a fixed key, so almost every input stops at the
//! threshold; the layout, size and path checks before it are what gets exercised.
#![no_main]
use airlock_bundle::{
    ExpiryEnforcement, Limits, NameRule, PublicKey, TrustRoot, TrustedKey, verify_stream,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let trust = TrustRoot::new(
        vec![TrustedKey {
            name: "fuzz".into(),
            key: PublicKey::from_raw([7; 32]),
        }],
        1,
        NameRule::Any,
        ExpiryEnforcement::UnsafeAllowMissing,
    )
    .expect("trust root");
    let _ = verify_stream(
        data,
        &trust,
        &Limits::default(),
        time::OffsetDateTime::UNIX_EPOCH,
        |_| Ok(None),
    );
});
