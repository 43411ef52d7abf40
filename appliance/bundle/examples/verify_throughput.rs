//! Verification throughput of a large synthetic bundle against `sha256sum` of the same
//! file, measured in one run (target: >= 0.8x sha256sum).
//!
//! Usage: cargo run -p airlock-bundle --example verify_throughput -- [SIZE_MIB] [DIR]
//! Writes DIR/bench.airlock (SIZE_MIB of pseudo-random payload, default 1024), verifies it
//! three times with `verify_stream` (signature + streamed SHA-256 of every byte, discarded),
//! runs `sha256sum` on it three times, prints the best of each and the ratio, and deletes
//! the file.
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use airlock_bundle::{
    ExpiryEnforcement, FORMAT, FileEntry, Limits, Manifest, NameRule, Sha256, SigningKey,
    TrustRoot, TrustedKey, signatures_to_bytes, verify_stream,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| std::env::temp_dir().display().to_string()),
    );
    let size = mib << 20;
    let path = dir.join("bench.airlock");

    // Payload: xorshift bytes, hashed while generated, generated again while written.
    let mut chunk = vec![0u8; 1 << 20];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for _ in 0..mib {
        rng.fill(&mut chunk);
        ctx.update(&chunk);
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(ctx.finish().as_ref());
    let now = time::OffsetDateTime::now_utc();
    let manifest = Manifest {
        format: FORMAT.into(),
        name: "bench".into(),
        version: semver::Version::new(1, 0, 0),
        sequence: 1,
        created: now,
        expires: Some(now + time::Duration::days(1)),
        architecture: "llama".into(),
        license: "none".into(),
        files: vec![FileEntry {
            path: "model.gguf".into(),
            size,
            sha256: Sha256(digest),
        }],
    };
    let (key, _) = SigningKey::generate()?;
    let bytes = manifest.to_bytes();
    let sigs = signatures_to_bytes(&[key.sign(&bytes)]);
    {
        let mut b = tar::Builder::new(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&path)?,
        ));
        let header = |name: &str, len: u64| {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).expect("short name");
            h.set_size(len);
            h.set_mode(0o644);
            h.set_cksum();
            h
        };
        b.append(&header("manifest.json", bytes.len() as u64), &bytes[..])?;
        b.append(&header("signatures.json", sigs.len() as u64), &sigs[..])?;
        // The same byte sequence as hashed above (reads are multiples of 8 bytes).
        let mut g = Gen {
            left: size,
            rng: XorShift(0x9E37_79B9_7F4A_7C15),
        };
        b.append(&header("model.gguf", size), &mut g)?;
        b.into_inner()?.flush()?;
    }
    let trust = TrustRoot::new(
        vec![TrustedKey {
            name: "bench".into(),
            key: key.public().clone(),
        }],
        1,
        NameRule::Any,
        ExpiryEnforcement::Required,
    )?;
    let file_len = std::fs::metadata(&path)?.len();
    let mut ours = f64::MAX;
    let mut theirs = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let f = BufReader::with_capacity(airlock_bundle::CHUNK, std::fs::File::open(&path)?);
        verify_stream(f, &trust, &Limits::default(), now, |_| Ok(None))?;
        ours = ours.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let out = std::process::Command::new("sha256sum")
            .arg(&path)
            .output()?;
        if !out.status.success() {
            return Err("sha256sum failed".into());
        }
        theirs = theirs.min(t.elapsed().as_secs_f64());
    }
    std::fs::remove_file(&path)?;
    let mb = file_len as f64 / (1 << 20) as f64;
    println!("bundle size        {mb:.0} MiB");
    println!(
        "airlock verify     {:.0} MiB/s ({ours:.2} s, best of 3)",
        mb / ours
    );
    println!(
        "sha256sum          {:.0} MiB/s ({theirs:.2} s, best of 3)",
        mb / theirs
    );
    println!(
        "ratio              {:.2}x sha256sum (target >= 0.80)",
        theirs / ours
    );
    Ok(())
}

struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            word.copy_from_slice(&self.0.to_le_bytes()[..word.len()]);
        }
    }
}

struct Gen {
    left: u64,
    rng: XorShift,
}

impl std::io::Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = if want >= 8 { want & !7 } else { want };
        self.rng.fill(&mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}
