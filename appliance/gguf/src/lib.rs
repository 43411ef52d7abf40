//! GGUF reader (filled in by the engine issue).
