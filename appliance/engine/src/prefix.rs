//! The prompt-prefix cache of a [`crate::Batch`]: KV-cache slots kept after their sequence
//! ended, so that a later prompt starting with the same tokens resumes from them.
//!
//! A chat client resends the whole conversation every turn, and an agent the same long system
//! prompt every call; recomputing those tokens is most of the time to first token on a CPU.
//! When a sequence ends (finished, cancelled or removed) its slot is *retained* with the tokens
//! whose keys/values it holds. A new request names a [`CacheScope`]; [`PrefixCache::take`]
//! picks the retained entry of the same scope with the longest common prefix with the new
//! prompt, and the batch truncates it to that prefix (at most `prompt − 1` tokens: the last
//! prompt token is always recomputed, its logits pick the first new token) and feeds the rest.
//!
//! # Exactness
//! Reuse changes no output bit: the CPU forward pass is chunk-invariant (`crate::fused`
//! attention and the `crate::kernels` products compute each token alone, in a fixed order), so
//! the resumed positions get exactly the logits of a cold run. Tests check it
//! (`tests/engine/prefix.rs`). On the GPU features the products are not chunk-invariant (a
//! prompt chunk takes another kernel than a decode step): reuse there may change low-order
//! bits.
//!
//! # Scopes: no reuse across tenants
//! Entries are only ever reused within one scope, which the service sets to the client
//! certificate's fingerprint (narrowed to the request's `user` and data subject when it names
//! them). Sharing a prefix cache between tenants is a timing side channel:
//! a cached prefix answers measurably faster, so a second tenant could probe, token by token,
//! what another tenant's prompts begin with (shown against shared prompt caches of hosted LLM
//! APIs, e.g. Gu et al., "Auditing Prompt Caching in Language Model APIs", 2025). Within one
//! identity the cache reveals nothing the identity did not send. A request without a scope
//! neither reuses nor leaves an entry.
//!
//! # Memory
//! Retained slots keep their allocated capacity ([`crate::KvCache::capacity`]); the batch
//! reports it ([`crate::Batch::retained_positions`]) so the caller counts it against its
//! KV-cache budget, and evicts least-recently-used entries when admitting a request needs room
//! ([`crate::Batch::evict_retained`]) or when it wants them all gone
//! ([`crate::Batch::clear_retained`]). The number of entries is bounded too
//! ([`PrefixCacheConfig::max_entries`]).

/// Retained entries per batch unless configured otherwise.
pub const DEFAULT_MAX_ENTRIES: usize = 16;

/// Who may reuse whose cached prefixes: an opaque key (the service uses the client
/// certificate's SHA-256 fingerprint). Entries are only reused within one scope.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheScope(Box<[u8]>);

impl CacheScope {
    /// A scope named by `key` (compared byte for byte).
    pub fn new(key: impl Into<Vec<u8>>) -> CacheScope {
        CacheScope(key.into().into_boxed_slice())
    }
}

impl std::fmt::Debug for CacheScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key may identify a person's certificate: logs get its length only.
        write!(f, "CacheScope({} bytes)", self.0.len())
    }
}

/// Settings of the prefix cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixCacheConfig {
    /// Keep ended sequences' slots for reuse (`false`: slots are freed at once).
    pub enabled: bool,
    /// Most retained entries; the least recently used goes first.
    pub max_entries: usize,
}

impl Default for PrefixCacheConfig {
    fn default() -> Self {
        PrefixCacheConfig {
            enabled: true,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// A retained slot.
#[derive(Debug)]
pub(crate) struct Retained {
    /// KV-cache slot.
    pub slot: usize,
    scope: CacheScope,
    /// The tokens whose keys/values the slot holds, in order.
    tokens: Vec<u32>,
    /// Allocated positions (what it costs).
    pub capacity: usize,
    /// Clock value of its last use (larger is more recent).
    last_used: u64,
}

/// Retained slots of one batch.
#[derive(Debug, Default)]
pub(crate) struct PrefixCache {
    entries: Vec<Retained>,
    clock: u64,
    pub config: PrefixCacheConfig,
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// Takes the entry of `scope` sharing the longest prefix with `prompt` (the most recent
    /// among equals) and returns its slot and how many of its tokens to keep:
    /// `min(common prefix, prompt.len() − 1)`. `None` (nothing taken) when no entry of the
    /// scope shares a usable prefix.
    pub fn take(&mut self, scope: &CacheScope, prompt: &[u32]) -> Option<(usize, usize)> {
        let limit = prompt.len().saturating_sub(1);
        let (i, keep) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| &e.scope == scope)
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(limit)))
            .filter(|&(_, keep)| keep > 0)
            .max_by_key(|&(i, keep)| (keep, self.entries[i].last_used))?;
        let e = self.entries.swap_remove(i);
        Some((e.slot, keep))
    }

    /// Retains `slot` holding `tokens`' keys/values. Returns the entries evicted to stay within
    /// [`PrefixCacheConfig::max_entries`] (their slots are the caller's to free).
    pub fn retain(
        &mut self,
        slot: usize,
        scope: CacheScope,
        tokens: Vec<u32>,
        capacity: usize,
    ) -> Vec<Retained> {
        self.clock += 1;
        self.entries.push(Retained {
            slot,
            scope,
            tokens,
            capacity,
            last_used: self.clock,
        });
        let mut evicted = Vec::new();
        while self.entries.len() > self.config.max_entries {
            match self.pop_lru() {
                Some(e) => evicted.push(e),
                None => break,
            }
        }
        evicted
    }

    /// Removes and returns the least recently used entry.
    pub fn pop_lru(&mut self) -> Option<Retained> {
        let (i, _) = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.last_used)?;
        Some(self.entries.swap_remove(i))
    }

    /// Allocated positions of every entry.
    pub fn positions(&self) -> usize {
        self.entries.iter().map(|e| e.capacity).sum()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max: usize) -> PrefixCache {
        PrefixCache {
            config: PrefixCacheConfig {
                enabled: true,
                max_entries: max,
            },
            ..PrefixCache::default()
        }
    }

    #[test]
    fn takes_the_longest_prefix_of_the_same_scope_only() {
        let (a, b) = (CacheScope::new([1u8]), CacheScope::new([2u8]));
        let mut c = cache(8);
        assert!(c.retain(0, a.clone(), vec![1, 2, 3], 256).is_empty());
        assert!(c.retain(1, a.clone(), vec![1, 2, 3, 4, 5], 256).is_empty());
        assert!(
            c.retain(2, b.clone(), vec![1, 2, 3, 4, 5, 6], 256)
                .is_empty()
        );
        // Scope b's entry shares more, but belongs to someone else.
        assert_eq!(c.take(&a, &[1, 2, 3, 4, 5, 6, 7]), Some((1, 5)));
        // The last prompt token is always recomputed.
        assert_eq!(c.take(&a, &[1, 2, 3]), Some((0, 2)));
        assert_eq!(c.take(&a, &[1, 2, 3]), None);
        assert_eq!(c.take(&b, &[9, 1]), None);
        assert_eq!(c.take(&b, &[1]), None);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let s = CacheScope::new(*b"s");
        let mut c = cache(2);
        c.retain(0, s.clone(), vec![1], 256);
        c.retain(1, s.clone(), vec![2], 512);
        assert_eq!(c.positions(), 768);
        let evicted = c.retain(2, s.clone(), vec![3], 256);
        assert_eq!(evicted.iter().map(|e| e.slot).collect::<Vec<_>>(), [0]);
        assert_eq!(c.pop_lru().map(|e| e.slot), Some(1));
        assert_eq!(c.pop_lru().map(|e| e.slot), Some(2));
        assert!(c.pop_lru().is_none());
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let s = CacheScope::new(*b"secret-fingerprint");
        assert_eq!(format!("{s:?}"), "CacheScope(18 bytes)");
    }
}
