//! Arbitrary text through `Policy::parse` (TOML syntax, typed deserialisation with unknown
//! keys refused, path resolution, semantic checks) and, for a policy that parses, the
//! identity matcher with certificate facts from the same input.
//!
//! Input: policy text, optionally followed by a 0xFF byte (never valid UTF-8, so never part
//! of the text) and the facts: NUL-separated CN, OU, O, SAN URI and SAN e-mail.
//!
//! Properties: no panic on any input; a policy that parses renders (`airlock policy check`
//! prints that rendering) and the rendering parses back to the same rendering; the error
//! of a policy that does not parse displays without panicking.
#![no_main]
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use policy::{CertFacts, Fingerprint, Policy};

/// Never read: the target calls `parse`, not `load`, so no named file is opened.
const SOURCE: &str = "/nonexistent/airlock-fuzz/airlock.toml";

fuzz_target!(|data: &[u8]| {
    let (text, facts) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let path = Path::new(SOURCE);
    let policy = match Policy::parse(text, path) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            let _ = e.key();
            return;
        }
    };
    let rendered = policy
        .render_effective()
        .expect("a policy that parsed must render");
    let again = Policy::parse(&rendered, path)
        .unwrap_or_else(|e| panic!("the effective policy does not parse back: {e}\n{rendered}"));
    assert_eq!(
        again.render_effective().expect("renders"),
        rendered,
        "the effective policy changes when parsed back"
    );

    let facts = String::from_utf8_lossy(facts);
    let mut parts = facts.split('\0').map(str::to_owned);
    let mut next = || parts.next().into_iter().collect::<Vec<_>>();
    let cert = CertFacts {
        fingerprint: Fingerprint([0x5a; 32]),
        common_names: next(),
        org_units: next(),
        orgs: next(),
        san_uris: next(),
        san_emails: next(),
    };
    let _ = policy.roles_for(&cert, Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))));
    let _ = policy.roles_for(&cert, None);
    // `key_file` would make the target read whatever file the input names.
    let inline_keys_only = policy
        .trust
        .as_ref()
        .is_none_or(|t| t.publishers.iter().all(|p| p.key_file.is_none()));
    if inline_keys_only && let Err(e) = policy.trust_keys() {
        let _ = e.to_string();
    }
});
