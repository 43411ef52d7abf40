//! [`KvCache`]: keys and values of every sequence in a batch, one slot per sequence.
//!
//! A slot holds, per layer, `[kv_heads, capacity, head_dim]` tensors for keys and values. The
//! capacity grows in steps of [`GROW_STEP`] positions (never past the context length), so a
//! short chat costs a few MiB, not the whole context window. Writes use `slice_assign` on a
//! uniquely owned tensor, which flex performs in place.

use burn::tensor::{Device, Tensor};

use crate::config::LlamaConfig;
use crate::error::{EngineError, Result};

/// Positions added when a slot runs out of room.
pub const GROW_STEP: usize = 256;

#[derive(Debug)]
struct Slot {
    /// Positions written and committed (all layers).
    len: usize,
    /// Positions allocated.
    cap: usize,
    /// Per layer `[kv_heads, cap, head_dim]`; `None` only while being updated.
    k: Vec<Option<Tensor<3>>>,
    v: Vec<Option<Tensor<3>>>,
}

/// Per-sequence key/value storage for all layers.
#[derive(Debug)]
pub struct KvCache {
    slots: Vec<Option<Slot>>,
    n_layers: usize,
    kv_heads: usize,
    head_dim: usize,
    context_length: usize,
    device: Device,
}

impl KvCache {
    /// An empty cache for `config` on `device`.
    pub fn new(config: &LlamaConfig, device: &Device) -> KvCache {
        KvCache {
            slots: Vec::new(),
            n_layers: config.n_layers,
            kv_heads: config.n_kv_heads,
            head_dim: config.head_dim,
            context_length: config.context_length,
            device: device.clone(),
        }
    }

    /// Opens a slot for a new sequence (reusing a free one) and returns its index.
    pub fn allocate(&mut self) -> usize {
        let slot = Slot {
            len: 0,
            cap: 0,
            k: (0..self.n_layers).map(|_| None).collect(),
            v: (0..self.n_layers).map(|_| None).collect(),
        };
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            self.slots[i] = Some(slot);
            i
        } else {
            self.slots.push(Some(slot));
            self.slots.len() - 1
        }
    }

    /// Releases a slot and its memory.
    pub fn free(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = None;
        }
    }

    /// Positions stored in `slot` (`None` for a free or unknown slot).
    pub fn len(&self, slot: usize) -> Option<usize> {
        self.slots.get(slot)?.as_ref().map(|s| s.len)
    }

    /// Positions allocated to `slot` (`None` for a free or unknown slot).
    pub fn capacity(&self, slot: usize) -> Option<usize> {
        self.slots.get(slot)?.as_ref().map(|s| s.cap)
    }

    /// Number of open slots.
    pub fn open_slots(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Forgets positions from `len` on (the next write starts there).
    pub fn truncate(&mut self, slot: usize, len: usize) {
        if let Some(Some(s)) = self.slots.get_mut(slot) {
            s.len = s.len.min(len);
        }
    }

    fn slot_mut(&mut self, slot: usize) -> Result<&mut Slot> {
        self.slots
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(EngineError::UnknownSequence { id: slot as u64 })
    }

    /// Makes room for `n` more positions in `slot`; fails past the context length.
    pub(crate) fn reserve(&mut self, slot: usize, n: usize) -> Result<usize> {
        let (kvh, hd, ctx, layers) = (
            self.kv_heads,
            self.head_dim,
            self.context_length,
            self.n_layers,
        );
        let device = self.device.clone();
        let s = self.slot_mut(slot)?;
        let need = s.len + n;
        if need > ctx {
            return Err(EngineError::ContextOverflow {
                needed: need,
                prompt: s.len,
                max_new: n,
                limit: ctx,
            });
        }
        if need > s.cap {
            let cap = need.next_multiple_of(GROW_STEP).min(ctx);
            for l in 0..layers {
                for t in [&mut s.k[l], &mut s.v[l]] {
                    let fresh = Tensor::<3>::zeros([kvh, cap, hd], &device);
                    *t = Some(match t.take() {
                        Some(old) if s.len > 0 => {
                            let kept = old.narrow(1, 0, s.len);
                            fresh.slice_assign([0..kvh, 0..s.len, 0..hd], kept)
                        }
                        _ => fresh,
                    });
                }
            }
            s.cap = cap;
        }
        Ok(s.len)
    }

    /// Writes `k`, `v` (`[kv_heads, n, head_dim]`) of `layer` at the slot's current length and
    /// returns all keys and values so far, `[kv_heads, len + n, head_dim]` each. Call
    /// [`KvCache::reserve`] first and [`KvCache::commit`] after the last layer.
    pub(crate) fn append(
        &mut self,
        slot: usize,
        layer: usize,
        k: Tensor<3>,
        v: Tensor<3>,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        let [kvh, n, hd] = k.dims();
        let s = self.slot_mut(slot)?;
        let (start, end) = (s.len, s.len + n);
        let mut out = Vec::with_capacity(2);
        for (store, new) in [(&mut s.k[layer], k), (&mut s.v[layer], v)] {
            let Some(t) = store.take() else {
                return Err(EngineError::UnknownSequence { id: slot as u64 });
            };
            let t = t.slice_assign([0..kvh, start..end, 0..hd], new);
            out.push(t.clone().narrow(1, 0, end));
            *store = Some(t);
        }
        let v_all = out.pop();
        let k_all = out.pop();
        match (k_all, v_all) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(EngineError::UnknownSequence { id: slot as u64 }),
        }
    }

    /// Every layer's keys and values of `slot` at full capacity, `[k, v]` per layer,
    /// `[kv_heads, capacity, head_dim]` each (`None` for a free or unknown slot, or one not yet
    /// reserved): what a recorded decode step writes into (`crate::step`).
    pub(crate) fn tensors(&self, slot: usize) -> Option<Vec<Tensor<3>>> {
        let s = self.slots.get(slot)?.as_ref()?;
        s.k.iter()
            .zip(&s.v)
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect()
    }

    /// Marks `n` positions of `slot` as written in every layer.
    pub(crate) fn commit(&mut self, slot: usize, n: usize) -> Result<()> {
        let s = self.slot_mut(slot)?;
        s.len += n;
        Ok(())
    }
}
