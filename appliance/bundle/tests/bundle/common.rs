//! Fixtures: publisher keys, a synthetic GGUF, and a raw tar writer that can produce any
//! malformed archive (absolute paths, links, devices, wrong sizes) that tar::Builder
//! refuses to write.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use airlock_bundle::{
    ActiveModel, BundleError, Event, ExpiryEnforcement, FORMAT, FileEntry, Limits, MANIFEST_ENTRY,
    Manifest, ModelStore, NameRule, SIGNATURES_ENTRY, Sha256, Signature, SigningKey, TrustRoot,
    TrustedKey, signatures_to_bytes,
};
use airlock_gguf::{GgmlType, write::GgufWriter};
use time::OffsetDateTime;

pub const NAME: &str = "tiny-llama";

/// Fixed "now" of every verification.
pub fn now() -> OffsetDateTime {
    time::macros::datetime!(2026-11-30 12:00 UTC)
}

/// A load test that accepts every model.
pub fn pass(_: &ActiveModel) -> Result<(), String> {
    Ok(())
}

/// A small valid GGUF (llama architecture).
pub fn gguf_bytes(seed: f32) -> Vec<u8> {
    let w: Vec<f32> = (0..64 * 4).map(|i| (i as f32 * 0.1 + seed).sin()).collect();
    let mut g = GgufWriter::new();
    g.metadata("general.architecture", "llama")
        .metadata("general.license", "apache-2.0")
        .metadata("llama.block_count", 1u32);
    g.tensor_from_f32("blk.0.attn_q.weight", &[64, 4], GgmlType::Q8_0, &w)
        .expect("tensor");
    g.to_bytes()
}

pub fn sha(bytes: &[u8]) -> Sha256 {
    let mut d = [0u8; 32];
    d.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    Sha256(d)
}

/// One raw archive entry.
#[derive(Clone, Debug)]
pub struct Raw {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub data: Vec<u8>,
    /// Size written in the header (default: data length).
    pub declared: Option<u64>,
    pub link: Option<Vec<u8>>,
}

impl Raw {
    pub fn file(name: &str, data: Vec<u8>) -> Raw {
        Raw {
            name: name.as_bytes().to_vec(),
            typeflag: b'0',
            data,
            declared: None,
            link: None,
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let mut h = tar::Header::new_ustar();
        let size = self.declared.unwrap_or(self.data.len() as u64);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::new(self.typeflag));
        {
            let bytes = h.as_mut_bytes();
            bytes[..100].fill(0);
            bytes[..self.name.len()].copy_from_slice(&self.name);
            if let Some(link) = &self.link {
                bytes[157..157 + link.len()].copy_from_slice(link);
            }
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&self.data);
        let pad = self.data.len().div_ceil(512) * 512 - self.data.len();
        out.extend(std::iter::repeat_n(0u8, pad));
    }
}

/// Publisher keys: `a` and `b` trusted (threshold 2), `stranger` not.
pub struct Keys {
    pub a: SigningKey,
    pub b: SigningKey,
    pub stranger: SigningKey,
}

impl Keys {
    pub fn new() -> Keys {
        let k = || SigningKey::generate().expect("key").0;
        Keys {
            a: k(),
            b: k(),
            stranger: k(),
        }
    }

    pub fn trust(&self, threshold: usize) -> TrustRoot {
        TrustRoot::new(
            vec![
                TrustedKey {
                    name: "alice".into(),
                    key: self.a.public().clone(),
                },
                TrustedKey {
                    name: "bob".into(),
                    key: self.b.public().clone(),
                },
            ],
            threshold,
            NameRule::Only(vec![NAME.into(), "tiny-*".into()]),
            ExpiryEnforcement::Required,
        )
        .expect("trust root")
    }
}

/// A bundle under construction: each attack scenario edits one part.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub manifest: Manifest,
    /// Manifest bytes as stored (signed unless a scenario edits them afterwards).
    pub manifest_bytes: Vec<u8>,
    pub signatures: Vec<Signature>,
    /// Payload entries after the two header entries.
    pub payload: Vec<Raw>,
    /// Bytes after the payload (default: the two zero blocks).
    pub tail: Vec<u8>,
}

impl Bundle {
    /// A good bundle: model + LICENSE, sequence `seq`, version 1.0.`seq`, expires in a
    /// day; unsigned.
    pub fn new(seq: u64) -> Bundle {
        let model = gguf_bytes(seq as f32);
        let license = b"Apache-2.0\n".to_vec();
        let files = vec![
            FileEntry {
                path: "model.gguf".into(),
                size: model.len() as u64,
                sha256: sha(&model),
            },
            FileEntry {
                path: "LICENSE".into(),
                size: license.len() as u64,
                sha256: sha(&license),
            },
        ];
        let manifest = Manifest {
            format: FORMAT.into(),
            name: NAME.into(),
            version: semver::Version::new(1, 0, seq),
            sequence: seq,
            created: now() - time::Duration::hours(1),
            expires: Some(now() + time::Duration::days(1)),
            architecture: "llama".into(),
            license: "Apache-2.0".into(),
            files,
        };
        Bundle {
            manifest_bytes: manifest.to_bytes(),
            manifest,
            signatures: vec![],
            payload: vec![
                Raw::file("model.gguf", model),
                Raw::file("LICENSE", license),
            ],
            tail: vec![0; 1024],
        }
    }

    /// Re-serialises the manifest after an edit (before signing).
    pub fn with_manifest(mut self, f: impl FnOnce(&mut Manifest)) -> Bundle {
        f(&mut self.manifest);
        self.manifest_bytes = self.manifest.to_bytes();
        self
    }

    pub fn signed_by(mut self, keys: &[&SigningKey]) -> Bundle {
        for k in keys {
            self.signatures.push(k.sign(&self.manifest_bytes));
        }
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        Raw::file(MANIFEST_ENTRY, self.manifest_bytes.clone()).write(&mut out);
        Raw::file(SIGNATURES_ENTRY, signatures_to_bytes(&self.signatures)).write(&mut out);
        for e in &self.payload {
            e.write(&mut out);
        }
        out.extend_from_slice(&self.tail);
        out
    }
}

/// A state directory with a store and the standard trust root (2 of alice, bob).
pub struct Appliance {
    pub dir: tempfile::TempDir,
    pub store: ModelStore,
    pub trust: TrustRoot,
    pub keys: Keys,
    pub events: Vec<Event>,
}

impl Appliance {
    pub fn new() -> Appliance {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = Keys::new();
        Appliance {
            store: ModelStore::new(dir.path()),
            trust: keys.trust(2),
            dir,
            keys,
            events: vec![],
        }
    }

    pub fn state(&self) -> &Path {
        self.dir.path()
    }

    /// A good bundle signed by both trusted keys.
    pub fn good(&self, seq: u64) -> Bundle {
        Bundle::new(seq).signed_by(&[&self.keys.a, &self.keys.b])
    }

    pub fn install_with(
        &mut self,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<ActiveModel, BundleError> {
        self.store.install(
            bytes,
            &self.trust,
            limits,
            now(),
            &mut self.events,
            &mut |_| {},
        )
    }

    pub fn install(&mut self, bytes: &[u8]) -> Result<ActiveModel, BundleError> {
        self.install_with(bytes, &Limits::default())
    }

    /// Installs and activates a good bundle of sequence `seq`.
    pub fn install_good(&mut self, seq: u64) -> ActiveModel {
        let b = self.good(seq).to_bytes();
        let m = self.install(&b).expect("good bundle installs");
        self.store
            .activate(&m.name, &m.version, now(), &mut pass, &mut self.events)
            .expect("activate")
    }

    /// Snapshot of what is installed and active.
    pub fn snapshot(&self) -> (Vec<String>, Option<ActiveModel>) {
        let list = self
            .store
            .list()
            .expect("list")
            .into_iter()
            .map(|m| format!("{} {}", m.manifest.name, m.manifest.version))
            .collect();
        (list, self.store.active(NAME).expect("active"))
    }

    /// Installs `bytes`, which must be refused with an error `check` accepts; then
    /// checks that staging is empty, nothing changed and a reject event was recorded.
    pub fn assert_rejected(
        &mut self,
        bytes: &[u8],
        check: impl FnOnce(&BundleError) -> bool,
    ) -> String {
        self.assert_rejected_with(bytes, &Limits::default(), check)
    }

    pub fn assert_rejected_with(
        &mut self,
        bytes: &[u8],
        limits: &Limits,
        check: impl FnOnce(&BundleError) -> bool,
    ) -> String {
        let before = self.snapshot();
        let err = self
            .install_with(bytes, limits)
            .expect_err("bundle must be rejected");
        assert!(check(&err), "unexpected error: {err:?}");
        assert_eq!(
            self.store.staging_entries().expect("staging"),
            Vec::<PathBuf>::new(),
            "staging directory left behind"
        );
        assert_eq!(self.snapshot(), before, "installed/active models changed");
        match self.events.last() {
            Some(Event::Reject { reason, .. }) => assert_eq!(reason, &err.to_string()),
            other => panic!("no reject event: {other:?}"),
        }
        err.to_string()
    }
}
