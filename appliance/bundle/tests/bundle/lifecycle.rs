use airlock_bundle::{BundleError as E, Event, Limits};

use crate::common::{Appliance, NAME, now, pass};

/// A good bundle installs into models/NAME/VERSION, activates, and reports events in
/// order: verify (before the payload), install, activate.
#[test]
fn good_bundle_installs_and_activates() {
    let mut app = Appliance::new();
    let active = app.install_good(1);
    assert_eq!(active.version, semver::Version::new(1, 0, 1));
    assert!(
        active
            .path
            .ends_with("models/tiny-llama/1.0.1/files/model.gguf")
    );
    assert_eq!(
        std::fs::read(&active.path)
            .map(|b| crate::common::sha(&b))
            .ok(),
        Some(active.sha256)
    );
    let kinds: Vec<&str> = app.events.iter().map(Event::kind).collect();
    assert_eq!(kinds, ["bundle.verify", "bundle.install", "model.activate"]);
    match &app.events[0] {
        Event::Verify { signers, .. } => assert_eq!(signers, &["alice", "bob"]),
        other => panic!("{other:?}"),
    }
    let list = app.store.list().expect("list");
    assert_eq!(list.len(), 1);
    assert!(list[0].active);
    assert_eq!(list[0].signers.len(), 2);
    assert_eq!(app.store.high_water(NAME).expect("mark"), Some(1));
    assert!(app.store.staging_entries().expect("staging").is_empty());
}

/// Installing does not activate; activation and explicit rollback swap the pointer, and
/// anti-rollback still refuses re-installing an older sequence.
#[test]
fn activate_and_rollback_are_explicit() {
    let mut app = Appliance::new();
    let v1 = app.install_good(1);
    let b2 = app.good(2).to_bytes();
    let v2 = app.install(&b2).expect("install v2");
    assert_eq!(
        app.store.active(NAME).expect("active"),
        Some(v1.clone()),
        "install alone does not activate"
    );
    app.store
        .activate(NAME, &v2.version, now(), &mut pass, &mut app.events)
        .expect("activate v2");
    assert_eq!(app.store.active(NAME).expect("active"), Some(v2.clone()));
    let back = app
        .store
        .rollback(NAME, now(), &mut pass, &mut app.events)
        .expect("rollback");
    assert_eq!(back, v1);
    assert!(
        matches!(app.events.last(), Some(Event::Rollback { from, to, .. }) if from == "1.0.2" && to == "1.0.1")
    );
    let err = app
        .store
        .rollback(NAME, now(), &mut pass, &mut app.events)
        .expect_err("nothing before v1");
    assert!(matches!(err, E::NoPrevious(_)), "{err}");
    assert_eq!(app.store.high_water(NAME).expect("mark"), Some(2));
}

/// The same version twice is refused (even with a higher sequence).
#[test]
fn reinstalling_a_version_is_refused() {
    let mut app = Appliance::new();
    app.install_good(1);
    let b = crate::common::Bundle::new(2)
        .with_manifest(|m| m.version = semver::Version::new(1, 0, 1))
        .signed_by(&[&app.keys.a, &app.keys.b]);
    app.assert_rejected(&b.to_bytes(), |e| matches!(e, E::AlreadyInstalled { .. }));
}

/// A tampered installed file is refused at activation.
#[test]
fn tampered_installed_model_is_not_activated() {
    let mut app = Appliance::new();
    app.install_good(1);
    let b2 = app.good(2).to_bytes();
    let v2 = app.install(&b2).expect("install v2");
    let mut bytes = std::fs::read(&v2.path).expect("read");
    bytes[10] ^= 1;
    std::fs::write(&v2.path, bytes).expect("tamper");
    let err = app
        .store
        .activate(NAME, &v2.version, now(), &mut pass, &mut app.events)
        .expect_err("tampered");
    assert!(matches!(err, E::CorruptState { .. }), "{err}");
    assert_eq!(
        app.store.active(NAME).expect("active").map(|a| a.sequence),
        Some(1)
    );
}

/// An event sink that refuses (audit log down) stops activation before the swap.
#[test]
fn failing_event_sink_blocks_activation() {
    struct Down;
    impl airlock_bundle::EventSink for Down {
        fn record(&mut self, _: &Event) -> Result<(), airlock_bundle::SinkError> {
            Err("audit log unavailable".into())
        }
    }
    let mut app = Appliance::new();
    let v1 = app.install_good(1);
    let b2 = app.good(2).to_bytes();
    let v2 = app.install(&b2).expect("install");
    let err = app
        .store
        .activate(NAME, &v2.version, now(), &mut pass, &mut Down)
        .expect_err("sink down");
    assert!(matches!(err, E::Event(_)), "{err}");
    assert_eq!(app.store.active(NAME).expect("active"), Some(v1));
}

/// Streaming: verifying a 256 MiB payload generated on the fly raises the peak memory
/// of the process by far less than the payload (bounded buffers, nothing retained).
#[test]
fn memory_stays_bounded_whatever_the_size() {
    use std::io::Read;
    const SIZE: u64 = 256 << 20;
    let app = Appliance::new();
    // Payload: a valid GGUF followed by zeros is not a GGUF of that size, so verify only
    // (Discard), which checks sizes and digests like install does.
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..SIZE >> 20 {
        ctx.update(&chunk);
    }
    let mut d = [0u8; 32];
    d.copy_from_slice(ctx.finish().as_ref());
    let mut b = crate::common::Bundle::new(1).with_manifest(|m| {
        m.files[0].size = SIZE;
        m.files[0].sha256 = airlock_bundle::Sha256(d);
    });
    b = b.signed_by(&[&app.keys.a, &app.keys.b]);
    b.payload[0].data.clear();
    b.payload[0].declared = Some(SIZE);
    let mut head = b.to_bytes();
    // Split: everything up to the model header's end, then SIZE zeros, then the rest.
    let model_header_end = 512
        + b.manifest_bytes.len().div_ceil(512) * 512
        + 512
        + airlock_bundle::signatures_to_bytes(&b.signatures)
            .len()
            .div_ceil(512)
            * 512
        + 512;
    let rest = head.split_off(model_header_end);
    let stream = std::io::Cursor::new(head)
        .chain(std::io::repeat(0).take(SIZE))
        .chain(std::io::Cursor::new(rest));
    let before = peak_rss_kib();
    let verified =
        airlock_bundle::verify_stream(stream, &app.trust, &Limits::default(), now(), |_| Ok(None))
            .expect("verifies");
    assert!(verified.bytes_read() > SIZE);
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "peak memory grew by {grown} KiB for a {SIZE}-byte bundle"
    );
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Two concurrent installs of different versions with the same sequence: the store lock
/// serialises them, so exactly one passes the anti-rollback check.
#[test]
fn concurrent_installs_cannot_both_pass_anti_rollback() {
    let app = Appliance::new();
    let bundles: Vec<Vec<u8>> = [1u64, 2]
        .iter()
        .map(|minor| {
            crate::common::Bundle::new(7)
                .with_manifest(|m| m.version = semver::Version::new(1, *minor, 0))
                .signed_by(&[&app.keys.a, &app.keys.b])
                .to_bytes()
        })
        .collect();
    let results: Vec<Result<_, E>> = std::thread::scope(|s| {
        let handles: Vec<_> = bundles
            .iter()
            .map(|b| {
                let (store, trust) = (&app.store, &app.trust);
                s.spawn(move || {
                    let mut events = Vec::new();
                    store.install(
                        &b[..],
                        trust,
                        &Limits::default(),
                        now(),
                        &mut events,
                        &mut |_| {},
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(results.iter().any(|r| matches!(
        r,
        Err(E::Rollback {
            sequence: 7,
            high_water: 7,
            ..
        })
    )));
    assert_eq!(app.store.list().expect("list").len(), 1);
}

/// Hardening finding 10: activation applies expiry and anti-rollback (an admin activated
/// 1.0.0 after 2.0.0, and an expired bundle); going back is the explicit rollback only.
/// Finding 5: a version that fails the load test is refused and the active one stays.
#[test]
fn activation_refuses_older_sequences_expired_bundles_and_failed_load_tests() {
    let mut app = Appliance::new();
    let v1 = app.install_good(1);
    let b2 = app.good(2).to_bytes();
    let v2 = app.install(&b2).expect("install v2");
    app.store
        .activate(NAME, &v2.version, now(), &mut pass, &mut app.events)
        .expect("activate v2");
    let active_seq = |app: &Appliance| app.store.active(NAME).expect("active").map(|a| a.sequence);

    let err = app
        .store
        .activate(NAME, &v1.version, now(), &mut pass, &mut app.events)
        .expect_err("older sequence");
    assert!(
        matches!(
            err,
            E::ActivationRollback {
                sequence: 1,
                high_water: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(active_seq(&app), Some(2));

    let b3 = app.good(3).to_bytes();
    let v3 = app.install(&b3).expect("install v3");
    let mut no_tensors = |_: &airlock_bundle::ActiveModel| Err("llama.block_count: missing".into());
    let err = app
        .store
        .activate(NAME, &v3.version, now(), &mut no_tensors, &mut app.events)
        .expect_err("load test fails");
    assert!(matches!(err, E::LoadTest { .. }), "{err}");
    assert!(err.to_string().contains("block_count"), "{err}");
    assert_eq!(active_seq(&app), Some(2));

    let later = now() + time::Duration::days(365);
    let err = app
        .store
        .activate(NAME, &v3.version, later, &mut pass, &mut app.events)
        .expect_err("expired");
    assert!(matches!(err, E::Expired { .. }), "{err}");
    let err = app
        .store
        .rollback(NAME, later, &mut pass, &mut app.events)
        .expect_err("rollback to an expired bundle");
    assert!(matches!(err, E::Expired { .. }), "{err}");
    assert_eq!(active_seq(&app), Some(2));
    // The explicit rollback goes below the high-water mark.
    let back = app
        .store
        .rollback(NAME, now(), &mut pass, &mut app.events)
        .expect("rollback");
    assert_eq!(back.sequence, 1);
}
