//! Signed model bundles (filled in by the bundle issue).
