//! GPT-2's byte-to-character table, for decoding byte-level BPE tokens.
//!
//! Byte-level BPE vocabularies spell every byte as one printable character:
//! bytes `!..=~`, `¡..=¬` and `®..=ÿ` stand for themselves, the other 68 bytes
//! (controls, space, NBSP, soft hyphen) map in order to U+0100 and up. So the
//! space is `Ġ` (U+0120) and the newline `Ċ` (U+010A). Encoding uses the same
//! table inside `tokenizers`' `ByteLevel` pre-tokenizer.

/// Whether byte `b` is spelled as the character of the same code.
fn is_direct(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The table from character code (below 0x144 = 256 + 68) to byte.
fn char_to_byte_table() -> [Option<u8>; 0x144] {
    let mut table = [None; 0x144];
    let mut next = 0x100usize;
    for b in 0..=255u8 {
        if is_direct(b) {
            table[b as usize] = Some(b);
        } else {
            table[next] = Some(b);
            next += 1;
        }
    }
    table
}

/// Decodes a byte-level token text to the bytes it stands for. A character
/// outside the table (a malformed vocabulary) is kept as its own UTF-8 bytes.
pub(crate) fn decode_chars(text: &str) -> Box<[u8]> {
    // Built per call: only used while building the vocabulary's piece cache.
    let table = char_to_byte_table();
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match table.get(c as usize).copied().flatten() {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_spellings() {
        assert_eq!(&*decode_chars("Ġ"), b" ");
        assert_eq!(&*decode_chars("Ċ"), b"\n");
        assert_eq!(&*decode_chars("ĠHello"), b" Hello");
        // The NBSP byte 0xA0 is not direct; 0xA1 is.
        assert_eq!(&*decode_chars("¡"), &[0xA1]);
    }

    #[test]
    fn table_is_a_bijection() {
        let table = char_to_byte_table();
        let mut seen = [false; 256];
        for b in table.iter().flatten() {
            assert!(!seen[*b as usize], "byte {b} mapped twice");
            seen[*b as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
