//! The fused feed-forward half of a block ([`Mlp::forward_residual`] on flex) equals the
//! tensor ops it replaces bit for bit, and gives each token the same row whatever the other
//! tokens of the call (a prefix-cached position must equal a freshly computed one).

use std::sync::Arc;

use airlock_engine::airlock_gguf::{GgmlType, GgufFile};
use airlock_engine::model::Llama;
use burn::tensor::{Device, Tensor, TensorData};

use crate::common::{Rng, Synth, synth_model};

fn synth(ty: GgmlType, down_ty: GgmlType) -> Synth {
    Synth {
        arch: "llama",
        omit: &[],
        d_model: 96,
        d_ff: 160,
        n_heads: 3,
        n_kv_heads: 1,
        n_layers: 1,
        vocab: 40,
        ctx: 64,
        tied: true,
        ty,
        down_ty,
        embd_ty: GgmlType::Q8_0,
        rope_base: 10000.0,
        seed: 21,
    }
}

fn rows(rng: &mut Rng, n: usize, d: usize, scale: f32, device: &Device) -> (Vec<f32>, Tensor<2>) {
    let v = rng.vec(n * d, scale);
    let t = Tensor::from_data(TensorData::new(v.clone(), [n, d]), device);
    (v, t)
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn fused_feed_forward_equals_the_tensor_ops_and_is_token_invariant() {
    let device = Device::flex();
    // With 8-bit activations (the default) a last-bit difference before a product is usually
    // rounded away by the quantization: the exact-activation case (f32 products, which stay
    // token-invariant below the GEMM threshold of 8 tokens) sees every bit.
    for (ty, down_ty, exact, n) in [
        (GgmlType::Q4_1, GgmlType::Q4_1, false, 9),
        (GgmlType::Q4_0, GgmlType::Q8_0, false, 9),
        (GgmlType::Q8_0, GgmlType::Q4_0, false, 9),
        (GgmlType::Q4_1, GgmlType::Q8_0, true, 7),
    ] {
        let s = synth(ty, down_ty);
        let file = Arc::new(GgufFile::from_bytes(synth_model(&s)).unwrap());
        let model = Llama::load(&file, &device)
            .unwrap()
            .with_exact_activations(exact);
        let b = &model.blocks[0];
        let d = s.d_model;
        let mut rng = Rng::new(22);
        let (xv, x) = rows(&mut rng, n, d, 2.0, &device);
        let (av, a) = rows(&mut rng, n, d, 1.0, &device);
        let fused = values(b.mlp.forward_residual(x.clone(), a.clone(), &b.ffn_norm));
        let h = x.add(a);
        let unfused = values(h.clone().add(b.mlp.forward(b.ffn_norm.forward(h))));
        assert_eq!(
            bits(&fused),
            bits(&unfused),
            "{ty:?}/{down_ty:?}: fused vs tensor ops"
        );
        // One token (decode) at the start, middle and end; a small batch; all but one.
        for (start, len) in [(0, 1), (4, 1), (n - 1, 1), (2, 3), (1, n - 1)] {
            let part = |v: &[f32]| {
                Tensor::<2>::from_data(
                    TensorData::new(v[start * d..(start + len) * d].to_vec(), [len, d]),
                    &device,
                )
            };
            let got = values(b.mlp.forward_residual(part(&xv), part(&av), &b.ffn_norm));
            assert_eq!(
                bits(&got),
                bits(&fused[start * d..(start + len) * d]),
                "{ty:?}/{down_ty:?}: tokens {start}..{} alone vs inside {n}",
                start + len
            );
        }
    }
}
