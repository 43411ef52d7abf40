//! Streaming read of a bundle: the two header entries (bounded), verification through a
//! callback, then each payload entry checked and hashed while it is written (or
//! discarded, for `bundle verify`). Memory is bounded by [`Limits`] plus one
//! [`CHUNK`]-sized buffer, whatever the bundle's size.
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use crate::error::BundleError;
use crate::limits::Limits;
use crate::manifest::{MANIFEST_ENTRY, SIGNATURES_ENTRY, Sha256, check_path};
use crate::verify::VerifiedManifest;

/// Read size while streaming payload files.
pub const CHUNK: usize = 256 * 1024;
/// Most bytes accepted after the first end-of-archive block (GNU tar pads archives to
/// 10 KiB records); all of them must be zero.
pub const MAX_TRAILING_BYTES: u64 = 64 * 1024;
const BLOCK: u64 = 512;

/// Where payload files go.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// Hash and drop (verification only).
    Discard,
    /// Create each file (exclusively) in this existing, empty directory, and fsync it.
    Directory(&'a Path),
}

/// A bundle whose header verified and whose every payload file was received complete,
/// with the size and digest the manifest states. Only [`read_bundle`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    header: VerifiedManifest,
    bytes_read: u64,
}

impl VerifiedBundle {
    /// The verified header.
    pub fn header(&self) -> &VerifiedManifest {
        &self.header
    }

    /// Bytes of archive read.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn archive_error(e: std::io::Error) -> BundleError {
    let msg = e.to_string();
    if e.kind() == std::io::ErrorKind::UnexpectedEof
        || msg.contains("EOF")
        || msg.contains("entire block")
    {
        BundleError::Truncated(msg)
    } else {
        BundleError::Archive(msg)
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

fn entry_path(entry: &tar::Entry<'_, impl Read>) -> Result<String, BundleError> {
    let raw = entry.path_bytes();
    String::from_utf8(raw.to_vec()).map_err(|_| BundleError::UnsafePath {
        path: String::from_utf8_lossy(&raw).into_owned(),
        reason: "not UTF-8",
    })
}

/// Refuses every entry type but a regular file.
fn check_type(path: &str, t: tar::EntryType) -> Result<(), BundleError> {
    use tar::EntryType as T;
    let special = |kind: &str| {
        Err(BundleError::SpecialEntry {
            path: path.to_owned(),
            kind: kind.to_owned(),
        })
    };
    match t {
        T::Regular => Ok(()),
        T::Symlink => Err(BundleError::LinkEntry {
            path: path.to_owned(),
            kind: "symlink",
        }),
        T::Link => Err(BundleError::LinkEntry {
            path: path.to_owned(),
            kind: "hardlink",
        }),
        T::Char => special("character device"),
        T::Block => special("block device"),
        T::Fifo => special("FIFO"),
        T::Directory => special("directory"),
        other => special(&format!("entry of type {:?}", other.as_byte() as char)),
    }
}

/// Reads one of the two header entries, at most `limit` bytes.
fn read_header_entry(
    entry: &mut tar::Entry<'_, impl Read>,
    index: usize,
    expected: &'static str,
    limit: u64,
    too_large: fn(u64, u64) -> BundleError,
) -> Result<Vec<u8>, BundleError> {
    let path = entry_path(entry)?;
    if path != expected {
        return Err(BundleError::Layout {
            index,
            expected,
            found: path,
        });
    }
    check_type(&path, entry.header().entry_type())?;
    let size = entry.size();
    if size > limit {
        return Err(too_large(size, limit));
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry
        .take(limit)
        .read_to_end(&mut buf)
        .map_err(archive_error)?;
    if buf.len() as u64 != size {
        return Err(BundleError::Truncated(format!(
            "{expected}: {} of {size} bytes",
            buf.len()
        )));
    }
    Ok(buf)
}

/// Reads a bundle from `reader`. `verify` receives the manifest and signature bytes and
/// decides (trust, name, expiry, rollback); no payload byte is written before it
/// returns Ok. `progress` is called with the bytes of payload processed so far.
pub fn read_bundle<R: Read>(
    reader: R,
    limits: &Limits,
    verify: impl FnOnce(Vec<u8>, Vec<u8>) -> Result<VerifiedManifest, BundleError>,
    dest: Destination<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifiedBundle, BundleError> {
    let mut counting = Counting {
        inner: reader,
        count: 0,
    };
    let header;
    // End of the last entry's data, padded: where the end-of-archive marker must start.
    let mut end_of_entries;
    {
        let mut archive = tar::Archive::new(&mut counting);
        let mut entries = archive.entries().map_err(archive_error)?;
        let mut next = |index: usize, expected: &'static str| match entries.next() {
            Some(e) => e.map_err(archive_error),
            None => Err(BundleError::Layout {
                index,
                expected,
                found: "end of archive".into(),
            }),
        };
        // Step 1: the manifest, bounded, before anything else.
        let mut m = next(0, MANIFEST_ENTRY)?;
        let manifest_bytes = read_header_entry(
            &mut m,
            0,
            MANIFEST_ENTRY,
            limits.max_manifest_bytes,
            |size, limit| BundleError::ManifestTooLarge { size, limit },
        )?;
        drop(m);
        // Step 2: the signatures, bounded.
        let mut s = next(1, SIGNATURES_ENTRY)?;
        let signatures_bytes = read_header_entry(
            &mut s,
            1,
            SIGNATURES_ENTRY,
            limits.max_signatures_bytes,
            |size, limit| BundleError::SignaturesTooLarge { size, limit },
        )?;
        end_of_entries = s.raw_file_position() + padded(s.size());
        drop(s);
        // Step 3: verify-before-unpack.
        header = verify(manifest_bytes, signatures_bytes)?;
        let manifest = header.manifest();

        // Step 4: the payload, each entry checked before a byte of it is written.
        let mut seen: BTreeSet<String> = [MANIFEST_ENTRY, SIGNATURES_ENTRY]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut buf = vec![0u8; CHUNK];
        let mut done: u64 = 0;
        for entry in entries {
            let mut entry = entry.map_err(archive_error)?;
            let path = entry_path(&entry)?;
            check_path(&path)?;
            check_type(&path, entry.header().entry_type())?;
            if !seen.insert(path.clone()) {
                return Err(BundleError::DuplicateFile(path));
            }
            let Some(listed) = manifest.file(&path) else {
                return Err(BundleError::UnlistedFile(path));
            };
            // A declared size differing from the signed one is refused before any
            // byte is written (a huge declared size cannot fill the disk).
            if entry.size() != listed.size {
                return Err(BundleError::SizeMismatch {
                    path,
                    expected: listed.size,
                    found: entry.size(),
                });
            }
            let mut out = match dest {
                Destination::Discard => None,
                Destination::Directory(dir) => {
                    let p = dir.join(&path);
                    let f = File::options()
                        .write(true)
                        .create_new(true)
                        .open(&p)
                        .map_err(BundleError::io(&p))?;
                    Some((f, p))
                }
            };
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            let mut left = listed.size;
            while left > 0 {
                let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
                let n = entry.read(&mut buf[..want]).map_err(archive_error)?;
                if n == 0 {
                    return Err(BundleError::Truncated(format!(
                        "`{path}`: {} of {} bytes",
                        listed.size - left,
                        listed.size
                    )));
                }
                ctx.update(&buf[..n]);
                if let Some((f, p)) = out.as_mut() {
                    f.write_all(&buf[..n])
                        .map_err(BundleError::io(p.as_path()))?;
                }
                left -= n as u64;
                done += n as u64;
                progress(done);
            }
            let mut got = [0u8; 32];
            got.copy_from_slice(ctx.finish().as_ref());
            let got = Sha256(got);
            if !got.ct_eq(&listed.sha256) {
                return Err(BundleError::DigestMismatch {
                    path,
                    expected: listed.sha256.to_string(),
                    found: got.to_string(),
                });
            }
            if let Some((f, p)) = out {
                f.sync_all().map_err(BundleError::io(&p))?;
            }
            end_of_entries = entry.raw_file_position() + padded(entry.size());
        }
        // Step 5: nothing listed may be missing.
        if let Some(missing) = manifest.files.iter().find(|f| !seen.contains(&f.path)) {
            return Err(BundleError::MissingFile(missing.path.clone()));
        }
    }
    // Step 6: a complete archive ends with two zero blocks, then at most record
    // padding, all zero. tar stopped after reading the first zero block, or at EOF.
    let marker = counting.count.saturating_sub(end_of_entries);
    if marker < BLOCK {
        return Err(BundleError::Truncated(
            "no end-of-archive marker after the last entry".into(),
        ));
    }
    let mut rest = [0u8; 8192];
    let mut trailing: u64 = 0;
    let mut nonzero = false;
    loop {
        let n = counting.read(&mut rest).map_err(archive_error)?;
        if n == 0 {
            break;
        }
        trailing += n as u64;
        nonzero |= rest[..n].iter().any(|b| *b != 0);
        if trailing > MAX_TRAILING_BYTES {
            break;
        }
    }
    if nonzero || trailing > MAX_TRAILING_BYTES {
        return Err(BundleError::TrailingData(trailing));
    }
    if marker + trailing < 2 * BLOCK {
        return Err(BundleError::Truncated(
            "end-of-archive marker is one block, not two".into(),
        ));
    }
    Ok(VerifiedBundle {
        header,
        bytes_read: counting.count,
    })
}
