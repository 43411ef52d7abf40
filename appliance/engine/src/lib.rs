//! Inference engine on burn (filled in by the engine issue).
