//! Tokenizer from GGUF metadata (filled in by the engine issue).
