//! The log's configuration: plain data, defaults as named constants.

use std::time::Duration;

/// What is kept of prompts and outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ContentMode {
    /// Only SHA-256 digests (data minimisation; the default).
    #[default]
    Digest,
    /// Digests plus the content sealed under a per-subject key (erasable).
    Sealed,
}

/// Log configuration: plain data, defaults as named constants.
#[derive(Clone, Debug)]
pub struct Config {
    pub content: ContentMode,
    /// Sign a checkpoint after this many new records (0: not by count).
    pub checkpoint_every: u64,
    /// Sign a checkpoint when this much time passed since the last one and records were
    /// added (`None`: not by time).
    pub checkpoint_interval: Option<Duration>,
    /// Checkpoint origin line (also the signing key's name); `None` uses the stored one, or
    /// creates `airlock/audit/<random>` on first open. A value different from the stored
    /// one is an error (checkpoints of one log must share their origin).
    pub origin: Option<String>,
    /// Sealed content older than this is shredded (whole key epochs). `None`: kept.
    pub retention: Option<Duration>,
    /// Length of one sealing-key epoch.
    pub epoch_length: Duration,
    /// Most appends written under one flush.
    pub max_batch: usize,
}

impl Config {
    pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
    pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
    pub const DEFAULT_EPOCH_LENGTH: Duration = Duration::from_secs(86_400);
    pub const DEFAULT_MAX_BATCH: usize = 1024;
}

impl Default for Config {
    fn default() -> Self {
        Config {
            content: ContentMode::Digest,
            checkpoint_every: Self::DEFAULT_CHECKPOINT_EVERY,
            checkpoint_interval: Some(Self::DEFAULT_CHECKPOINT_INTERVAL),
            origin: None,
            retention: None,
            epoch_length: Self::DEFAULT_EPOCH_LENGTH,
            max_batch: Self::DEFAULT_MAX_BATCH,
        }
    }
}
