//! `StreamDecoder` releases exactly what whole-sequence decoding gives, on
//! random byte sequences cut at random token boundaries.

use airlock_tokenizer::StreamDecoder;

use crate::common::{Rng, bpe_writer, load};

#[test]
fn stream_equals_whole_decode_on_random_bytes() {
    // 256 byte tokens: id b decodes to byte b.
    let tok = load(&bpe_writer("gpt-2", &[], &[], &[])).unwrap();
    // Bytes biased towards UTF-8 structure: ASCII, continuation, lead bytes, invalid.
    const INTERESTING: &[u8] = &[
        b'a', b' ', 0x80, 0xBF, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x99, 0x82, 0xFF, 0xC0,
        0xED, 0xA0,
    ];
    let mut rng = Rng::new(42);
    for _ in 0..3000 {
        let ids: Vec<u32> = (0..rng.below(16))
            .map(|_| u32::from(*rng.pick(INTERESTING)))
            .collect();
        let whole = tok.decode(&ids);
        let bytes: Vec<u8> = ids.iter().map(|&i| i as u8).collect();
        assert_eq!(whole, String::from_utf8_lossy(&bytes));
        let mut s = StreamDecoder::new(&tok);
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&s.push(id));
        }
        out.push_str(&s.finish());
        assert_eq!(out, whole, "{bytes:02x?}");
    }
}

#[test]
fn a_split_emoji_is_released_once_complete() {
    let tok = load(&bpe_writer("gpt-2", &[], &[], &[])).unwrap();
    let mut s = StreamDecoder::new(&tok);
    let emoji = "🙂".as_bytes();
    for &b in &emoji[..3] {
        assert_eq!(s.push(u32::from(b)), "");
    }
    assert_eq!(s.push(u32::from(emoji[3])), "🙂");
    assert_eq!(s.finish(), "");
}

#[test]
fn an_unfinished_character_is_flushed_as_a_replacement() {
    let tok = load(&bpe_writer("gpt-2", &[], &[], &[])).unwrap();
    let mut s = StreamDecoder::new(&tok);
    assert_eq!(s.push(u32::from(b'x')), "x");
    assert_eq!(s.push(0xF0), "");
    assert_eq!(s.finish(), "\u{FFFD}");
}
