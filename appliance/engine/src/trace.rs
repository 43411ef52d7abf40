//! Optional capture of intermediate activations, for comparing a forward pass op by op with
//! llama.cpp's (its graph callback names the same tensors: `attn_norm-{layer}`, `kq-{layer}`,
//! `l_out-{layer}`, `result_output`, …). See `examples/trace.rs`.
//!
//! Off by default: each trace point is one relaxed atomic load unless a capture is running
//! ([`capture`]), and the model code calls it only between ops, never inside a kernel.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Tensor;

/// One captured tensor: llama.cpp's name, its shape (outermost first) and row-major values.
#[derive(Debug, Clone)]
pub struct Traced {
    /// `{op}-{layer}` or a model-level name (`result_norm`).
    pub name: String,
    /// Shape, outermost axis first.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

static ON: AtomicBool = AtomicBool::new(false);
static CAPTURED: Mutex<Vec<Traced>> = Mutex::new(Vec::new());

/// Runs `f` with capture on and returns what it recorded (with `f`'s result). Captures from
/// other threads running a forward pass meanwhile are mixed in: use it in a quiet process.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<Traced>) {
    lock().clear();
    ON.store(true, Ordering::SeqCst);
    let r = f();
    ON.store(false, Ordering::SeqCst);
    (r, std::mem::take(&mut *lock()))
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Traced>> {
    // A panic while recording leaves a usable vector behind.
    CAPTURED.lock().unwrap_or_else(|e| e.into_inner())
}

/// True while a capture runs.
#[inline]
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Records `x` as `name` (layer-suffixed names are built only when capturing).
#[inline]
pub fn tensor<const D: usize>(name: impl FnOnce() -> String, x: &Tensor<D>) {
    if enabled() {
        record(name(), x);
    }
}

#[cold]
fn record<const D: usize>(name: String, x: &Tensor<D>) {
    let shape = x.dims().to_vec();
    let values = x
        .clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    lock().push(Traced {
        name,
        shape,
        values,
    });
}
