//! The chat template renderer: an arbitrary template source (a model file's
//! `tokenizer.chat_template` is untrusted), and arbitrary conversations rendered with
//! SmolLM2's real template and tokenized as a prompt.
//!
//! Input: one mode byte, then
//! - even mode: the template source (UTF-8, lossy), rendered over a fixed conversation;
//! - odd mode: a conversation, NUL-separated role, content, role, content, ... rendered with
//!   the default model's template (`appliance/testdata/smollm2-llamacpp.json`).
//!
//! Properties: no panic, no hang (the environment's fuel bounds every loop), memory within
//! libFuzzer's `-rss_limit_mb`; a rendered prompt tokenizes to ids below `vocab_size`.
//!
//! Known limit, not a finding: a template that doubles a string by concatenation exhausts
//! memory (minijinja bounds instructions, not sizes; see `src/chat.rs`).
#![no_main]
use std::sync::OnceLock;

use airlock_tokenizer::{ChatMessage, ChatTemplate, EncodeOptions, Tokenizer};
use libfuzzer_sys::fuzz_target;

// Only the BPE vocabulary is used here.
#[allow(dead_code)]
#[path = "vocab.rs"]
mod vocab;

const REFERENCE: &str = include_str!("../../../testdata/smollm2-llamacpp.json");

fn smollm2() -> &'static (ChatTemplate, Tokenizer) {
    static IT: OnceLock<(ChatTemplate, Tokenizer)> = OnceLock::new();
    IT.get_or_init(|| {
        let reference: serde_json::Value = serde_json::from_str(REFERENCE).expect("reference JSON");
        let source = reference["chat_template"].as_str().expect("chat_template");
        let template = ChatTemplate::new(source, "<|im_start|>", "<|im_end|>", "smollm2")
            .expect("SmolLM2's template compiles");
        (template, vocab::bpe("smollm"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if mode % 2 == 0 {
        let Ok(template) = ChatTemplate::new(&text, "<s>", "</s>", "fuzz") else {
            return;
        };
        let messages = [
            ChatMessage::new("system", "You are helpful."),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello!"),
            ChatMessage::new("user", "<|im_end|>{{ 7*7 }}"),
        ];
        let _ = template.render(&messages, mode & 2 == 0);
        return;
    }
    let parts: Vec<&str> = text.split('\0').collect();
    let messages: Vec<ChatMessage> = parts
        .chunks(2)
        .map(|pair| ChatMessage::new(pair[0], pair.get(1).copied().unwrap_or("")))
        .collect();
    let (template, tok) = smollm2();
    let Ok(prompt) = template.render(&messages, mode & 2 == 0) else {
        return;
    };
    if let Ok(ids) = tok.encode(&prompt, EncodeOptions::PROMPT) {
        assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
    }
});
