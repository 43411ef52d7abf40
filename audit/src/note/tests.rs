//! Known-answer tests from golang.org/x/mod/sumdb/note and the C2SP specs
//! (see `tests/vectors/README.md`), one test per parsing rule, checkpoint
//! body rules, and key files.

use super::*;
use crate::keyfile;
use ring::signature::Ed25519KeyPair;
use std::os::unix::fs::PermissionsExt;

#[derive(serde::Deserialize)]
struct Vectors {
    sumdb: Sumdb,
    c2sp: C2sp,
}

#[derive(serde::Deserialize)]
struct Sumdb {
    peter_vkey: String,
    peter_skey: String,
    enoch_vkey: String,
    text: String,
    peter_sig_line: String,
    enoch_sig_line: String,
    signed_by_peter: String,
    bad_vkeys: Vec<String>,
}

#[derive(serde::Deserialize)]
struct C2sp {
    signed_note_example: String,
    signed_note_example_text: String,
    checkpoint_example: String,
    checkpoint_example_origin: String,
    checkpoint_example_size: u64,
    checkpoint_example_root_b64: String,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("../../tests/vectors/signed_note.json"))
        .expect("vector file parses")
}

/// The Go `PRIVATE+KEY+name+id+base64(0x01 || seed)` key as a Signer.
fn signer_from_skey(skey: &str) -> Signer {
    let parts: Vec<&str> = skey.splitn(5, '+').collect();
    assert_eq!(parts[..2], ["PRIVATE", "KEY"]);
    let key = B64.decode(parts[4]).expect("base64");
    assert_eq!(key[0], SIG_TYPE_ED25519);
    let pair = Ed25519KeyPair::from_seed_unchecked(&key[1..]).expect("seed");
    let s = Signer::from_key_pair(parts[2], pair).expect("signer");
    assert_eq!(format!("{:08x}", s.verifier().key_id()), parts[3]);
    s
}

fn peter() -> Verifier {
    Verifier::from_vkey(&vectors().sumdb.peter_vkey).expect("vkey")
}

fn enoch() -> Verifier {
    Verifier::from_vkey(&vectors().sumdb.enoch_vkey).expect("vkey")
}

fn fresh_signer(name: &str) -> Signer {
    Signer::from_pkcs8(name, &generate_signing_key().expect("keygen")).expect("signer")
}

// --- Known answers -----------------------------------------------------------

#[test]
fn sumdb_vkey_parses_and_prints_back() {
    let v = vectors();
    let p = peter();
    assert_eq!(p.name(), "PeterNeumann");
    assert_eq!(p.key_id(), 0xc74f20a3);
    assert_eq!(p.vkey(), v.sumdb.peter_vkey);
    assert_eq!(enoch().key_id(), 0xaf0cfe78);
    assert_eq!(v.sumdb.peter_vkey.parse::<Verifier>().expect("FromStr"), p);
}

#[test]
fn sumdb_skey_signs_the_published_note_byte_for_byte() {
    let v = vectors();
    let s = signer_from_skey(&v.sumdb.peter_skey);
    assert_eq!(s.verifier().vkey(), v.sumdb.peter_vkey);
    assert_eq!(s.sign_text(&v.sumdb.text), v.sumdb.signed_by_peter);
}

#[test]
fn sumdb_published_notes_open() {
    let v = vectors();
    let both = format!(
        "{}\n{}{}",
        v.sumdb.text, v.sumdb.peter_sig_line, v.sumdb.enoch_sig_line
    );
    // One known (Peter), one unknown (Enoch): the unknown one is ignored.
    assert_eq!(
        open_note(both.as_bytes(), &[peter()]).expect("open"),
        v.sumdb.text
    );
    assert_eq!(
        open_note(both.as_bytes(), &[enoch()]).expect("open"),
        v.sumdb.text
    );
    assert_eq!(
        open_note(both.as_bytes(), &[peter(), enoch()]).expect("open"),
        v.sumdb.text
    );
    assert_eq!(
        open_note(v.sumdb.signed_by_peter.as_bytes(), &[peter()]).expect("open"),
        v.sumdb.text
    );
}

#[test]
fn sumdb_mangled_vkeys_are_rejected() {
    let v = vectors();
    let good = v.sumdb.peter_vkey.as_bytes();
    for i in 0..=good.len() {
        for j in i + 1..=good.len() {
            if (i, j) != (0, good.len()) {
                let s = String::from_utf8_lossy(&good[i..j]);
                assert!(Verifier::from_vkey(&s).is_err(), "accepted {s:?}");
            }
        }
    }
    for i in 0..good.len() {
        let mut b = good.to_vec();
        b[i] = b[i].wrapping_add(1);
        let s = String::from_utf8_lossy(&b);
        assert!(Verifier::from_vkey(&s).is_err(), "accepted {s:?}");
    }
    assert!(matches!(
        Verifier::from_vkey(&v.sumdb.bad_vkeys[0]),
        Err(NoteError::BadVerifierKey(_))
    ));
    assert!(matches!(
        Verifier::from_vkey(&v.sumdb.bad_vkeys[1]),
        Err(NoteError::UnsupportedAlgorithm(_))
    ));
    // A well-formed vkey whose key ID belongs to another name.
    let other = v.sumdb.peter_vkey.replace("PeterNeumann", "PeterNeuman");
    assert!(matches!(
        Verifier::from_vkey(&other),
        Err(NoteError::KeyIdMismatch {
            got: 0xc74f20a3,
            ..
        })
    ));
    assert!(matches!(
        Verifier::from_vkey(&v.sumdb.peter_vkey.replace("c74f20a3", "C74F20A3")),
        Err(NoteError::BadVerifierKey(_))
    ));
}

#[test]
fn c2sp_signed_note_example_parses_with_its_inner_blank_line() {
    let v = vectors();
    let (text, sigs) = parse_note(v.c2sp.signed_note_example.as_bytes()).expect("parse");
    assert_eq!(text, v.c2sp.signed_note_example_text);
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].name, "quasimodo.example/salvatore");
    assert_eq!(sigs[0].sig.len(), ED25519_SIGNATURE_LEN);
    // Its key is not published: for us it is an unknown signer.
    assert!(matches!(
        open_note(v.c2sp.signed_note_example.as_bytes(), &[peter()]),
        Err(NoteError::NoKnownSignature)
    ));
}

#[test]
fn c2sp_checkpoint_example_body_parses() {
    let v = vectors();
    let (text, _) = parse_note(v.c2sp.checkpoint_example.as_bytes()).expect("parse");
    let cp = Checkpoint::parse_body(text).expect("body");
    assert_eq!(cp.origin(), v.c2sp.checkpoint_example_origin);
    assert_eq!(cp.size(), v.c2sp.checkpoint_example_size);
    assert_eq!(
        B64.encode(cp.root().as_bytes()),
        v.c2sp.checkpoint_example_root_b64
    );
    assert!(cp.extensions().is_empty());
    assert_eq!(cp.body(), text);
    // Unsigned by any key we know: the body must not be trusted.
    assert!(matches!(
        open_checkpoint(
            &v.c2sp.checkpoint_example_origin,
            &[peter()],
            v.c2sp.checkpoint_example.as_bytes()
        ),
        Err(NoteError::NoKnownSignature)
    ));
}

// --- Parsing rules -------------------------------------------------------------

fn signed() -> String {
    vectors().sumdb.signed_by_peter
}

fn open(msg: &[u8]) -> Result<&str, NoteError> {
    open_note(msg, &[peter()])
}

#[test]
fn rejects_non_utf8() {
    let mut msg = b"\xff".to_vec();
    msg.extend_from_slice(signed().as_bytes());
    assert!(matches!(open(&msg), Err(NoteError::NotUtf8)));
}

#[test]
fn rejects_control_characters() {
    let msg = format!("\x01{}", signed());
    assert!(matches!(
        open(msg.as_bytes()),
        Err(NoteError::ControlCharacter { offset: 0, code: 1 })
    ));
    let crlf = signed().replacen('\n', "\r\n", 1);
    assert!(matches!(
        open(crlf.as_bytes()),
        Err(NoteError::ControlCharacter { code: 0x0d, .. })
    ));
    let tab = signed().replacen(' ', "\t", 1);
    assert!(matches!(
        open(tab.as_bytes()),
        Err(NoteError::ControlCharacter { code: 0x09, .. })
    ));
}

#[test]
fn rejects_missing_final_newline() {
    let s = signed();
    assert!(matches!(
        open(&s.as_bytes()[..s.len() - 1]),
        Err(NoteError::MissingFinalNewline)
    ));
}

#[test]
fn rejects_notes_without_signatures() {
    let v = vectors();
    assert!(matches!(
        open(v.sumdb.text.as_bytes()),
        Err(NoteError::NoSignatures)
    ));
    let blank = format!("{}\n", v.sumdb.text);
    assert!(matches!(
        open(blank.as_bytes()),
        Err(NoteError::NoSignatures)
    ));
}

#[test]
fn ignores_unknown_signers_but_requires_a_known_one() {
    let v = vectors();
    let enoch_only = format!("{}\n{}", v.sumdb.text, v.sumdb.enoch_sig_line);
    assert!(matches!(
        open(enoch_only.as_bytes()),
        Err(NoteError::NoKnownSignature)
    ));
    assert!(matches!(
        open_note(signed().as_bytes(), &[]),
        Err(NoteError::NoKnownSignature)
    ));
}

#[test]
fn rejects_bad_base64() {
    let bad = signed().replace("x08go/", "x08go!");
    assert!(matches!(
        open(bad.as_bytes()),
        Err(NoteError::BadSignatureEncoding { line: 1 })
    ));
    let unpadded = signed().replace("AM=\n", "AM\n");
    assert!(matches!(
        open(unpadded.as_bytes()),
        Err(NoteError::BadSignatureEncoding { line: 1 })
    ));
    let short = format!("{}\n\u{2014} PeterNeumann AAAA\n", vectors().sumdb.text);
    assert!(matches!(
        open(short.as_bytes()),
        Err(NoteError::BadSignatureEncoding { line: 1 })
    ));
}

#[test]
fn rejects_malformed_signature_lines() {
    let v = vectors();
    let sig_b64 = v
        .sumdb
        .peter_sig_line
        .rsplit(' ')
        .next()
        .expect("b64")
        .trim_end();
    for line in [
        format!("- PeterNeumann {sig_b64}\n"), // hyphen, not em dash
        format!("\u{2014}PeterNeumann {sig_b64}\n"), // no space after the dash
        format!("\u{2014} PeterNeumann{sig_b64}\n"), // no space before the signature
        format!("\u{2014} Peter+Neumann {sig_b64}\n"), // '+' in the name
        format!("\u{2014}  {sig_b64}\n"),      // empty name
        format!("\u{2014} Peter\u{a0}Neumann {sig_b64}\n"), // Unicode space in the name
    ] {
        let msg = format!("{}\n{line}", v.sumdb.text);
        assert!(
            matches!(
                open(msg.as_bytes()),
                Err(NoteError::MalformedSignatureLine { line: 1 })
            ),
            "accepted {line:?}"
        );
    }
    let trailing = format!("{}Unexpected line.\n", signed());
    assert!(matches!(
        open(trailing.as_bytes()),
        Err(NoteError::MalformedSignatureLine { line: 2 })
    ));
}

#[test]
fn wrong_key_id_makes_the_signature_unknown() {
    // Same name, other key ID: not Peter's key, so ignored (spec), and then
    // no known signature remains.
    let wrong = signed().replace("x08g", "xxxx");
    assert!(matches!(
        open(wrong.as_bytes()),
        Err(NoteError::NoKnownSignature)
    ));
}

#[test]
fn signature_by_wrong_key_under_known_id_is_invalid() {
    let v = vectors();
    let mallory = fresh_signer("PeterNeumann");
    let sig = mallory.key_pair.sign(v.sumdb.text.as_bytes());
    let mut blob = 0xc74f20a3u32.to_be_bytes().to_vec();
    blob.extend_from_slice(sig.as_ref());
    let forged = format!(
        "{}\n\u{2014} PeterNeumann {}\n",
        v.sumdb.text,
        B64.encode(blob)
    );
    assert!(matches!(
        open(forged.as_bytes()),
        Err(NoteError::InvalidSignature {
            key_id: 0xc74f20a3,
            ..
        })
    ));
    // Wrong length (the sumdb "ABCD" insertion).
    let s = signed();
    let split = v.sumdb.text.len() + 1 + 60;
    let longer = format!("{}ABCD{}", &s[..split], &s[split..]);
    assert!(matches!(
        open(longer.as_bytes()),
        Err(NoteError::InvalidSignature { .. })
    ));
}

#[test]
fn tampered_body_fails() {
    let tampered = signed().replacen("problem", "Problem", 1);
    assert!(matches!(
        open(tampered.as_bytes()),
        Err(NoteError::InvalidSignature {
            key_id: 0xc74f20a3,
            ..
        })
    ));
    // Removing the newline that ends the text changes the signed bytes too.
    let v = vectors();
    let joined = format!("{}\n{}", v.sumdb.text.trim_end(), v.sumdb.peter_sig_line);
    assert!(open(joined.as_bytes()).is_err());
}

#[test]
fn invalid_known_signature_rejects_even_with_a_valid_one() {
    let v = vectors();
    let other = fresh_signer("EnochRoot");
    let bad_enoch = v.sumdb.enoch_sig_line.replace("FXSdeX", "FXSdeY");
    let msg = format!("{}\n{}{}", v.sumdb.text, v.sumdb.peter_sig_line, bad_enoch);
    assert!(matches!(
        open_note(msg.as_bytes(), &[peter(), enoch()]),
        Err(NoteError::InvalidSignature {
            key_id: 0xaf0cfe78,
            ..
        })
    ));
    // A different EnochRoot key (other ID) is merely unknown.
    assert_eq!(
        open_note(msg.as_bytes(), &[peter(), other.verifier().clone()]).ok(),
        Some(v.sumdb.text.as_str())
    );
}

#[test]
fn rejects_duplicate_signature_by_a_known_key() {
    let v = vectors();
    let msg = format!(
        "{}\n{}{}",
        v.sumdb.text, v.sumdb.peter_sig_line, v.sumdb.peter_sig_line
    );
    assert!(matches!(
        open(msg.as_bytes()),
        Err(NoteError::DuplicateSignature {
            key_id: 0xc74f20a3,
            ..
        })
    ));
}

#[test]
fn rejects_ambiguous_verifiers() {
    assert!(matches!(
        open_note(signed().as_bytes(), &[peter(), peter()]),
        Err(NoteError::AmbiguousKey {
            key_id: 0xc74f20a3,
            ..
        })
    ));
    // An unused duplicate verifier is harmless.
    assert!(open_note(signed().as_bytes(), &[enoch(), peter(), enoch()]).is_ok());
}

#[test]
fn limits_signature_count_and_size() {
    let v = vectors();
    // The spec's minimum of 16 signatures is accepted (15 unknown + Peter).
    let sixteen = format!(
        "{}\n{}{}",
        v.sumdb.text,
        v.sumdb.enoch_sig_line.repeat(15),
        v.sumdb.peter_sig_line
    );
    assert!(open(sixteen.as_bytes()).is_ok());
    let many = format!(
        "{}\n{}",
        v.sumdb.text,
        v.sumdb.enoch_sig_line.repeat(MAX_SIGNATURES + 1)
    );
    assert!(matches!(
        open(many.as_bytes()),
        Err(NoteError::TooManySignatures {
            max: MAX_SIGNATURES
        })
    ));
    let big = format!("{}{}", "a\n".repeat(MAX_NOTE_SIZE / 2), signed());
    assert!(matches!(
        open(big.as_bytes()),
        Err(NoteError::TooLarge { .. })
    ));
}

// --- Checkpoints -----------------------------------------------------------------

const ORIGIN: &str = "airlock.test/audit";

fn checkpoint(size: u64) -> Checkpoint {
    Checkpoint::new(ORIGIN, size, crate::merkle::leaf_hash(&size.to_be_bytes()))
        .expect("checkpoint")
}

#[test]
fn checkpoint_sign_open_roundtrip() {
    let s = fresh_signer(ORIGIN);
    let cp = checkpoint(42).with_extension("ext line").expect("ext");
    let note = sign_checkpoint(&cp, &s);
    assert!(note.starts_with(&format!("{ORIGIN}\n42\n")));
    let got = open_checkpoint(ORIGIN, &[s.verifier().clone()], note.as_bytes()).expect("open");
    assert_eq!(*got.checkpoint(), cp);
    assert_eq!(got.size(), 42); // via Deref
    assert_eq!(got.note(), note);
    assert_eq!(got.into_checkpoint().extensions(), ["ext line"]);
    // The pinned vkey string round-trips.
    let pinned: Verifier = s.verifier().to_string().parse().expect("vkey");
    assert!(open_checkpoint(ORIGIN, &[pinned], note.as_bytes()).is_ok());
}

#[test]
fn checkpoint_with_wrong_key_or_origin_fails() {
    let s = fresh_signer(ORIGIN);
    let note = sign_checkpoint(&checkpoint(7), &s);
    // Another key with the same name: a different key ID, so unknown.
    let other = fresh_signer(ORIGIN);
    assert!(matches!(
        open_checkpoint(ORIGIN, &[other.verifier().clone()], note.as_bytes()),
        Err(NoteError::NoKnownSignature)
    ));
    assert!(matches!(
        open_checkpoint("other.log", &[s.verifier().clone()], note.as_bytes()),
        Err(NoteError::OriginMismatch { .. })
    ));
    let tampered = note.replacen("\n7\n", "\n8\n", 1);
    assert!(matches!(
        open_checkpoint(ORIGIN, &[s.verifier().clone()], tampered.as_bytes()),
        Err(NoteError::InvalidSignature { .. })
    ));
}

/// Signs arbitrary text so the body rules are reached (they run only after
/// the signature verifies).
fn open_signed_body(body: &str) -> Result<VerifiedCheckpoint, NoteError> {
    let s = fresh_signer(ORIGIN);
    let note = s.sign_text(body);
    open_checkpoint(ORIGIN, &[s.verifier().clone()], note.as_bytes())
}

#[test]
fn checkpoint_body_rules() {
    let root = B64.encode([7u8; 32]);
    assert!(open_signed_body(&format!("{ORIGIN}\n0\n{root}\n")).is_ok());
    assert!(matches!(
        open_signed_body(&format!("{ORIGIN}\n5\n")),
        Err(NoteError::MissingCheckpointLines)
    ));
    for size in [
        "01",
        "-1",
        "+1",
        "",
        " 1",
        "1 ",
        "18446744073709551616",
        "0x10",
        "١",
    ] {
        assert!(
            matches!(
                open_signed_body(&format!("{ORIGIN}\n{size}\n{root}\n")),
                Err(NoteError::BadTreeSize)
            ),
            "accepted size {size:?}"
        );
    }
    assert_eq!(
        open_signed_body(&format!("{ORIGIN}\n18446744073709551615\n{root}\n"))
            .expect("max size")
            .size(),
        u64::MAX
    );
    let short_root = B64.encode([7u8; 31]);
    let unpadded = root.trim_end_matches('=');
    for bad in [short_root.as_str(), unpadded, "not base64!", ""] {
        assert!(
            matches!(
                open_signed_body(&format!("{ORIGIN}\n1\n{bad}\n")),
                Err(NoteError::BadRootHash)
            ),
            "accepted root {bad:?}"
        );
    }
    assert!(matches!(
        open_signed_body(&format!("{ORIGIN}\n1\n{root}\n\n")),
        Err(NoteError::BadExtensionLine { index: 0 })
    ));
    assert!(matches!(
        open_signed_body(&format!("\n1\n{root}\n")),
        Err(NoteError::MissingCheckpointLines)
    ));
}

#[test]
fn checkpoint_constructor_rejects_bad_origins_and_extensions() {
    let root = crate::merkle::empty_root();
    for origin in ["", "a b", "a+b", "a\nb", "a\u{2003}b"] {
        assert!(matches!(
            Checkpoint::new(origin, 0, root),
            Err(NoteError::BadName(_))
        ));
    }
    let cp = Checkpoint::new(ORIGIN, 0, root).expect("ok");
    assert!(matches!(
        cp.clone().with_extension(""),
        Err(NoteError::BadExtensionLine { index: 0 })
    ));
    assert!(matches!(
        cp.clone().with_extension("a\nb"),
        Err(NoteError::BadExtensionLine { index: 0 })
    ));
    // Regression (fuzz/note): DEL and C1 controls are allowed by the note
    // rules, so an extension the parser accepts must also be constructible.
    let ext = "x\u{7f}\u{85}y";
    let cp = cp.with_extension(ext).expect("DEL is not below U+0020");
    let s = fresh_signer(ORIGIN);
    let opened = open_checkpoint(
        ORIGIN,
        &[s.verifier().clone()],
        sign_checkpoint(&cp, &s).as_bytes(),
    )
    .expect("open");
    assert_eq!(opened.extensions(), [ext]);
    assert!(matches!(
        Signer::from_pkcs8("bad name", &generate_signing_key().expect("key")),
        Err(NoteError::BadName(_))
    ));
}

// --- Key files -------------------------------------------------------------------

#[test]
fn signing_key_file_roundtrip_and_permissions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit-signing.key");
    let created = create_signing_key_file(ORIGIN, &path).expect("create");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read_to_string(&path).expect("read");
    assert!(pem.starts_with(PEM_BEGIN) && pem.trim_end().ends_with(PEM_END));

    let loaded = Signer::load(ORIGIN, &path).expect("load");
    assert_eq!(loaded.verifier(), created.verifier());
    let note = sign_checkpoint(&checkpoint(3), &loaded);
    assert!(open_checkpoint(ORIGIN, &[created.verifier().clone()], note.as_bytes()).is_ok());

    // Never replaced.
    assert!(matches!(
        create_signing_key_file(ORIGIN, &path),
        Err(NoteError::KeyFile(KeyFileError::Io { .. }))
    ));
    // Group/world readable keys are refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(matches!(
        Signer::load(ORIGIN, &path),
        Err(NoteError::KeyFile(KeyFileError::InsecurePermissions {
            mode: 0o644,
            ..
        }))
    ));
}

#[test]
fn signing_key_file_accepts_der_and_rejects_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let der = generate_signing_key().expect("key");
    let der_path = dir.path().join("der.key");
    keyfile::create_secret(&der_path, &der).expect("write");
    let s = Signer::load(ORIGIN, &der_path).expect("load der");
    assert_eq!(
        *s.verifier(),
        *Signer::from_pkcs8(ORIGIN, &der).expect("signer").verifier()
    );

    let junk_path = dir.path().join("junk.key");
    keyfile::create_secret(&junk_path, b"not a key").expect("write");
    assert!(matches!(
        Signer::load(ORIGIN, &junk_path),
        Err(NoteError::BadSigningKey)
    ));
    let bad_pem = dir.path().join("bad.pem");
    keyfile::create_secret(
        &bad_pem,
        format!("{PEM_BEGIN}\n!!!\n{PEM_END}\n").as_bytes(),
    )
    .expect("write");
    assert!(matches!(
        Signer::load(ORIGIN, &bad_pem),
        Err(NoteError::BadSigningKey)
    ));
}

#[test]
fn debug_output_does_not_leak_the_private_key() {
    let der = generate_signing_key().expect("key");
    let s = Signer::from_pkcs8(ORIGIN, &der).expect("signer");
    let dbg = format!("{s:?}");
    assert!(dbg.contains(&s.verifier().vkey()));
    // The seed is bytes 16..48 of ring's PKCS#8 v2 document.
    assert!(!dbg.contains(&B64.encode(&der[16..48])));
}
