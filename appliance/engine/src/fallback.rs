//! Plain burn tensor-op versions of the fused ops, for backends without a native
//! [`crate::fused::FusedOps`] (the cube GPU backends).
//!
//! Each computes what the flex version computes, in a few generic tensor operations; they are
//! slower (several kernels and allocations each) but run on any backend. Unit tests compare
//! them with the fused versions on flex, so the GPU path is checked by the CPU build too.
//! Differences from flex: the RMSNorm sum of squares is f32 (flex: f64), and
//! [`round_f16`] rounds on the host (a device → host → device round trip of the new keys and
//! values: exact, and small, but a synchronisation per layer).

use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};

use crate::model::rope::{RopeFreqs, RopeStyle};

/// [`crate::fused::FusedOps::rope`]: `x` `[heads, n, head_dim]` at positions `start..start + n`.
pub fn rope(x: Tensor<3>, start: usize, freqs: &Arc<RopeFreqs>) -> Tensor<3> {
    let [heads, n, hd] = x.dims();
    let half = hd / 2;
    let device = x.device();
    // [1, n, half, 1] angles as flex computes them (ggml's f32 recurrence).
    let (mut cos, mut sin) = (Vec::with_capacity(n * half), Vec::with_capacity(n * half));
    let mut cs = Vec::with_capacity(n * half);
    freqs.angles(start, n, &mut cs);
    for (c, s) in cs {
        cos.push(c);
        sin.push(s);
    }
    // Adjacent: [heads, n, half, 2], pairs (2i, 2i + 1), angles [1, n, half, 1].
    // NEOX: [heads, n, 2, half], pairs (i, i + half), angles [1, n, 1, half].
    let (pair_dim, pair_shape, table_shape) = match freqs.style {
        RopeStyle::Adjacent => (3, [heads, n, half, 2], [1, n, half, 1]),
        RopeStyle::Neox => (2, [heads, n, 2, half], [1, n, 1, half]),
    };
    let table = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, table_shape), &device);
    let (cos, sin) = (table(cos), table(sin));
    let pairs = x.reshape(pair_shape);
    let (x0, x1) = (
        pairs.clone().narrow(pair_dim, 0, 1),
        pairs.narrow(pair_dim, 1, 1),
    );
    let y0 = x0.clone().mul(cos.clone()).sub(x1.clone().mul(sin.clone()));
    let y1 = x0.mul(sin).add(x1.mul(cos));
    Tensor::cat(vec![y0, y1], pair_dim).reshape([heads, n, hd])
}

/// [`crate::fused::FusedOps::rms_norm`]: `x / sqrt(mean(x²) + eps) * w` over the last axis.
pub fn rms_norm(x: Tensor<2>, w: Tensor<1>, eps: f64) -> Tensor<2> {
    // [rows, 1]
    let ms = x.clone().mul(x.clone()).mean_dim(1);
    let scale = ms.add_scalar(eps).sqrt().recip();
    x.mul(scale).mul(w.unsqueeze::<2>())
}

/// [`crate::fused::FusedOps::swiglu`]: `silu(gate) · up` for `x` `[rows, 2d]` (gate | up).
pub fn swiglu(x: Tensor<2>) -> Tensor<2> {
    let d = x.dims()[1] / 2;
    burn::tensor::activation::silu(x.clone().narrow(1, 0, d)).mul(x.narrow(1, d, d))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use burn::tensor::Device;

    use super::*;
    use crate::fused::FusedOps;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol, "{i}: {x} vs {y}");
        }
    }

    // The fused flex op, called directly (the public wrappers would route here anyway).
    fn fused<const D: usize>(
        f: impl FnOnce(burn::backend::DispatchTensor) -> burn::backend::DispatchTensor,
        x: Tensor<D>,
    ) -> Tensor<D> {
        Tensor::from_dispatch(f(x.into_dispatch()))
    }

    #[test]
    fn rope_matches_fused() {
        for style in [RopeStyle::Adjacent, RopeStyle::Neox] {
            let d = Device::flex();
            let x = Tensor::<3>::from_data(TensorData::new(random(3 * 5 * 8, 1), [3, 5, 8]), &d);
            let freqs = crate::model::rope::RopeConfig::new(8, 10000.0)
                .with_style(style)
                .init(None)
                .freqs;
            let want = fused(
                |t| <burn::backend::Dispatch as FusedOps>::rope(t, 7, Arc::clone(&freqs)),
                x.clone(),
            );
            assert_close(&values(rope(x, 7, &freqs)), &values(want), 1e-5);
        }
    }

    /// NEOX rotates (x[i], x[i + 4]) of a width-8 head: at position 1 pair 0 turns by 1 rad,
    /// and dimensions 1..4 / 5..8 move only with their own pair.
    #[test]
    fn neox_pairs_halves() {
        let d = Device::flex();
        let mut v = vec![0f32; 8];
        v[0] = 1.0; // pair 0's first half only
        let x = Tensor::<3>::from_data(TensorData::new(v, [1, 1, 8]), &d);
        let freqs = crate::model::rope::RopeConfig::new(8, 10000.0)
            .with_style(RopeStyle::Neox)
            .init(None)
            .freqs;
        let got = values(fused(
            |t| <burn::backend::Dispatch as FusedOps>::rope(t, 1, Arc::clone(&freqs)),
            x,
        ));
        let want = [1f32.cos(), 0.0, 0.0, 0.0, 1f32.sin(), 0.0, 0.0, 0.0];
        assert_close(&got, &want, 1e-6);
    }

    #[test]
    fn swiglu_matches_fused() {
        let d = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new(random(3 * 2 * 40, 5), [3, 80]), &d);
        let want: Tensor<2> = Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::swiglu(
            x.clone().into_dispatch(),
        ));
        assert_close(&values(swiglu(x)), &values(want), 1e-5);
    }

    #[test]
    fn rms_norm_matches_fused() {
        let d = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new(random(4 * 64, 2), [4, 64]), &d);
        let w = Tensor::<1>::from_data(TensorData::new(random(64, 3), [64]), &d);
        let want: Tensor<2> =
            Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::rms_norm(
                x.clone().into_dispatch(),
                w.clone().into_dispatch(),
                1e-5,
            ));
        assert_close(&values(rms_norm(x, w, 1e-5)), &values(want), 1e-5);
    }
}
