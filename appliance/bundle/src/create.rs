//! The publisher side: `bundle create` and `bundle sign`. Both stream: a model is read
//! twice (hash for the manifest, then copy into the archive, hashed again to catch a
//! file changed in between), and signing copies the payload bytes verbatim.
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::error::BundleError;
use crate::limits::Limits;
use crate::manifest::{FORMAT, FileEntry, MANIFEST_ENTRY, Manifest, SIGNATURES_ENTRY, Sha256};
use crate::signature::{Signature, Signed, SigningKey, parse_signatures, signatures_to_bytes};
use crate::unpack::CHUNK;

/// What `bundle create` packs.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: semver::Version,
    /// Sequence (strictly increasing per name).
    pub sequence: u64,
    /// Expiry, if any.
    pub expires: Option<OffsetDateTime>,
    /// License (`None`: the GGUF's `general.license`, else an error).
    pub license: Option<String>,
    /// The `.gguf` model.
    pub model: PathBuf,
    /// Further files (LICENSE, README), stored under their file names.
    pub extra: Vec<PathBuf>,
    /// Creation time.
    pub created: OffsetDateTime,
}

fn hash_file(path: &Path, progress: &mut dyn FnMut(u64)) -> Result<(u64, Sha256), BundleError> {
    let mut f = File::open(path).map_err(BundleError::io(path))?;
    let mut buf = vec![0u8; CHUNK];
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(BundleError::io(path))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        n_total += n as u64;
        progress(n as u64);
    }
    let mut d = [0u8; 32];
    d.copy_from_slice(ctx.finish().as_ref());
    Ok((n_total, Sha256(d)))
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    ctx: ring::digest::Context,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        Ok(n)
    }
}

fn header(path: &str, size: u64, mtime: u64) -> Result<tar::Header, BundleError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).map_err(|e| BundleError::UnsafePath {
        path: path.to_owned(),
        reason: if e.to_string().contains("long") {
            "name too long"
        } else {
            "not storable in a tar header"
        },
    })?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// Writes `bytes` as a regular-file entry.
fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mtime: u64,
    out: &Path,
) -> Result<(), BundleError> {
    let h = header(path, bytes.len() as u64, mtime)?;
    b.append(&h, bytes).map_err(BundleError::io(out))
}

/// A temp file beside `out`, renamed over it by [`TempOut::commit`], removed otherwise.
struct TempOut {
    tmp: PathBuf,
    out: PathBuf,
    done: bool,
}

impl TempOut {
    fn new(out: &Path) -> Result<(TempOut, File), BundleError> {
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            out.file_name().and_then(|n| n.to_str()).unwrap_or("bundle"),
            std::process::id()
        ));
        let f = File::create(&tmp).map_err(BundleError::io(&tmp))?;
        Ok((
            TempOut {
                tmp,
                out: out.to_owned(),
                done: false,
            },
            f,
        ))
    }

    fn commit(mut self, f: File) -> Result<(), BundleError> {
        f.sync_all().map_err(BundleError::io(&self.tmp))?;
        drop(f);
        std::fs::rename(&self.tmp, &self.out).map_err(BundleError::io(&self.out))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for TempOut {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads the GGUF header of `model`: refuses a non-GGUF file, returns
/// (architecture, license if stated).
pub fn inspect_model(model: &Path) -> Result<(String, Option<String>), BundleError> {
    let what = model.display().to_string();
    let g = airlock_gguf::GgufFile::open(model).map_err(|e| BundleError::Model {
        path: what.clone(),
        reason: format!("not a valid GGUF: {e}"),
    })?;
    let arch = g
        .metadata()
        .get_str("general.architecture")
        .map_err(|e| BundleError::Model {
            path: what.clone(),
            reason: e.to_string(),
        })?
        .to_owned();
    let license = g
        .metadata()
        .get_opt::<&str>("general.license")
        .ok()
        .flatten()
        .map(str::to_owned);
    Ok((arch, license))
}

/// Creates an unsigned bundle at `out` (written to a temp file, then renamed).
/// `progress(n)` is called with each chunk's byte count while the files are hashed and
/// while they are copied (so twice the payload size in total).
pub fn create_bundle(
    opts: &CreateOptions,
    out: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, BundleError> {
    let (architecture, gguf_license) = inspect_model(&opts.model)?;
    let license = opts.license.clone().or(gguf_license).ok_or_else(|| {
        BundleError::Manifest("the GGUF states no general.license: pass --license".into())
    })?;
    let mut sources = vec![opts.model.clone()];
    sources.extend(opts.extra.iter().cloned());
    let mut files = Vec::new();
    for src in &sources {
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| BundleError::UnsafePath {
                path: src.display().to_string(),
                reason: "no UTF-8 file name",
            })?
            .to_owned();
        let (size, sha256) = hash_file(src, progress)?;
        files.push(FileEntry {
            path: name,
            size,
            sha256,
        });
    }
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        name: opts.name.clone(),
        version: opts.version.clone(),
        sequence: opts.sequence,
        created: opts.created,
        expires: opts.expires,
        architecture,
        license,
        files,
    };
    manifest.validate(&Limits::default())?;
    let mtime = u64::try_from(opts.created.unix_timestamp()).unwrap_or(0);
    let (tmp, file) = TempOut::new(out)?;
    let mut b = tar::Builder::new(BufWriter::with_capacity(CHUNK, file));
    append_bytes(&mut b, MANIFEST_ENTRY, &manifest.to_bytes(), mtime, out)?;
    append_bytes(
        &mut b,
        SIGNATURES_ENTRY,
        &signatures_to_bytes(&[]),
        mtime,
        out,
    )?;
    for (src, entry) in sources.iter().zip(&manifest.files) {
        let f = File::open(src).map_err(BundleError::io(src))?;
        let mut r = Hashing {
            inner: BufReader::with_capacity(CHUNK, f).take(entry.size),
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
        };
        let h = header(&entry.path, entry.size, mtime)?;
        let mut counted = ProgressReader {
            inner: &mut r,
            progress: &mut *progress,
        };
        b.append(&h, &mut counted).map_err(BundleError::io(out))?;
        let mut d = [0u8; 32];
        d.copy_from_slice(r.ctx.finish().as_ref());
        if !Sha256(d).ct_eq(&entry.sha256) {
            return Err(BundleError::Io {
                path: src.clone(),
                source: std::io::Error::other("file changed while the bundle was written"),
            });
        }
    }
    let w = b.into_inner().map_err(BundleError::io(out))?;
    let file = w.into_inner().map_err(|e| BundleError::Io {
        path: out.to_owned(),
        source: e.into_error(),
    })?;
    tmp.commit(file)?;
    Ok(manifest)
}

struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// The header of a bundle file (manifest parsed, signatures not checked), and the
/// offset where the payload entries start.
pub fn read_header(path: &Path, limits: &Limits) -> Result<(Signed<Manifest>, u64), BundleError> {
    let f = File::open(path).map_err(BundleError::io(path))?;
    let mut archive = tar::Archive::new(BufReader::new(f));
    let mut entries = archive
        .entries()
        .map_err(|e| BundleError::Archive(e.to_string()))?;
    let mut take = |index: usize, expected: &'static str, limit: u64| {
        let mut e = entries
            .next()
            .ok_or(BundleError::Layout {
                index,
                expected,
                found: "end of archive".into(),
            })?
            .map_err(|e| BundleError::Archive(e.to_string()))?;
        let found = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if found != expected {
            return Err(BundleError::Layout {
                index,
                expected,
                found,
            });
        }
        if e.size() > limit {
            return Err(if index == 0 {
                BundleError::ManifestTooLarge {
                    size: e.size(),
                    limit,
                }
            } else {
                BundleError::SignaturesTooLarge {
                    size: e.size(),
                    limit,
                }
            });
        }
        let mut v = Vec::new();
        (&mut e)
            .take(limit)
            .read_to_end(&mut v)
            .map_err(|err| BundleError::Truncated(err.to_string()))?;
        let end = e.raw_file_position() + e.size().div_ceil(512) * 512;
        Ok((v, end))
    };
    let (manifest_bytes, _) = take(0, MANIFEST_ENTRY, limits.max_manifest_bytes)?;
    let (sig_bytes, payload_start) = take(1, SIGNATURES_ENTRY, limits.max_signatures_bytes)?;
    let manifest = Manifest::parse(&manifest_bytes, limits)?;
    let signatures = parse_signatures(&sig_bytes, limits.max_signatures)?;
    Ok((
        Signed {
            signed: manifest,
            bytes: manifest_bytes,
            signatures,
        },
        payload_start,
    ))
}

/// Appends `key`'s signature to the bundle at `path` (rewritten through a temp file and
/// renamed; the payload is copied verbatim). Refuses a second signature by the same key.
pub fn sign_bundle(path: &Path, key: &SigningKey) -> Result<Signature, BundleError> {
    let limits = Limits::default();
    let (signed, payload_start) = read_header(path, &limits)?;
    let id = key.public().id();
    if signed.signatures.iter().any(|s| s.keyid == id) {
        return Err(BundleError::DuplicateSignature(id.to_string()));
    }
    let sig = key.sign(&signed.bytes);
    let mut sigs = signed.signatures.clone();
    sigs.push(sig.clone());
    let mtime = u64::try_from(signed.signed.created.unix_timestamp()).unwrap_or(0);
    let (tmp, file) = TempOut::new(path)?;
    let mut w = BufWriter::with_capacity(CHUNK, file);
    // Raw entries (no tar::Builder: it would end the archive here; the copied tail
    // carries the payload and the end-of-archive marker).
    for (name, bytes) in [
        (MANIFEST_ENTRY, signed.bytes.clone()),
        (SIGNATURES_ENTRY, signatures_to_bytes(&sigs)),
    ] {
        let h = header(name, bytes.len() as u64, mtime)?;
        let pad = (bytes.len() as u64).div_ceil(512) * 512 - bytes.len() as u64;
        w.write_all(h.as_bytes())
            .and_then(|()| w.write_all(&bytes))
            .and_then(|()| w.write_all(&vec![0u8; usize::try_from(pad).unwrap_or(0)]))
            .map_err(BundleError::io(path))?;
    }
    let mut src = File::open(path).map_err(BundleError::io(path))?;
    src.seek(SeekFrom::Start(payload_start))
        .map_err(BundleError::io(path))?;
    std::io::copy(&mut BufReader::with_capacity(CHUNK, src), &mut w)
        .map_err(BundleError::io(path))?;
    let file = w.into_inner().map_err(|e| BundleError::Io {
        path: path.to_owned(),
        source: e.into_error(),
    })?;
    tmp.commit(file)?;
    Ok(sig)
}
