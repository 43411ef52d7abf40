//! [`crate::step::decode_step`] on the cube backend: a decode step's launches on buffers of its
//! own, recorded once as a graph (cubecl's capture: a hardware graph on CUDA, re-encoded
//! dispatches on wgpu) and replayed for every later token of the sequence.
//!
//! The arithmetic is the eager path's, op for op, in fewer launches (10 per layer instead of
//! 18 with 8-bit activations): the query, key and value products (and `qwen2`'s biases) in one
//! launch, RoPE with the f16 rounding and both cache writes in one, the gate and up products
//! with SwiGLU in one, each RMSNorm with the quantization of its output in one
//! (`q8::rms_norm_q8_kernel`: the same codes as a separate quantizing launch).
//! Three changes make one recording serve every position: the token and position are read from
//! a device buffer (`input = [token, pos]`, written before each replay); RoPE reads its angles
//! from a table of every position the cache can hold and writes keys straight into the cache at
//! `pos`, values likewise; attention reads its length from `pos`. Logits equal an eager step's
//! (bitwise on lavapipe: `tests/engine/gpu.rs`).
//!
//! A recording is valid for the buffers it was made with: the cache's tensors (a grown cache is
//! a new tensor), the norm weights, this step's scratch. A call with other tensors records
//! again (two extra step runs, once per 256 positions as the cache grows).

use std::sync::{Arc, Mutex, PoisonError};

use burn::backend::ops::FloatTensorOps;
use burn::backend::{Cube, DType, Shape, TensorMetadata};
use burn_cubecl::tensor::CubeTensor;
use cubecl::bytes::Bytes;
use cubecl::client::{Client, Graph};
use cubecl::prelude::*;
use cubecl_environment::stream::StreamPolicy;

use super::decode::{decode_unit, unit_col};
use super::fused::{ROW_THREADS, attention_at_kernel, rms_norm_kernel, round_to_f16};
use super::products::{LANES, q_matvec3_kernel, q_swiglu_kernel};
use super::q8::rms_norm_q8_kernel;
use super::{
    Acts, ROWS_PER_CUBE, Unread, device_blocks, elementwise, f32_contiguous, layout, matvec_into,
    plane_sum_fits, q8_block, q8_buffers, quantize_into, unread,
};
use crate::model::rope::RopeStyle;
use crate::qweight::QWeight;
use crate::step::{LayerWeights, StepPlan};

/// `out = row input[0] of w` as f32 (`cols` values): one unit per 32 values.
#[cube(launch)]
fn embed_kernel(
    w: &[u32],
    input: &[u32],
    out: &mut [f32],
    cols: usize,
    row_bytes: usize,
    #[comptime] kind: u32,
) {
    let u = ABSOLUTE_POS;
    if u >= cols / 32 {
        terminate!();
    }
    let mut vals = Array::<f32>::new(32usize);
    decode_unit(w, input[0] as usize * row_bytes, u, &mut vals, kind);
    #[unroll]
    for i in 0..32 {
        out[unit_col(u, i, kind)] = vals[i];
    }
}

/// The query, key and value of one token at position `input[1]` (`qkv`: `[q | k | v]`,
/// `heads` and `kv_heads` heads of `hd`) into place: the query rotated (RoPE) into `q`, the
/// key rotated into row `pos` of `k_cache`, the value copied into row `pos` of `v_cache`
/// (cache head `h` at `h · cache_stride`), each rounded to f16 with `round`. One unit per
/// rotated pair or copied value; `table` holds `(cos, sin)` of every position, `hd / 2`
/// pairs each. The eager path's RoPE, rounding and cache write, value for value.
#[cube(launch)]
fn qkv_rope_kernel(
    qkv: &[f32],
    table: &[f32],
    input: &[u32],
    q: &mut [f32],
    k_cache: &mut [f32],
    v_cache: &mut [f32],
    heads: usize,
    kv_heads: usize,
    hd: usize,
    cache_stride: usize,
    #[comptime] neox: bool,
    #[comptime] round: bool,
) {
    let half = hd / 2;
    let nq = heads * half;
    let nk = kv_heads * half;
    let p = ABSOLUTE_POS;
    if p >= nq + nk + kv_heads * hd {
        terminate!();
    }
    let pos = input[1] as usize;
    if p < nq + nk {
        let is_k = p >= nq;
        let pair = if is_k { p - nq } else { p };
        let head = pair / half;
        let i = pair % half;
        let a = select(neox, i, 2 * i);
        let b = select(neox, i + half, 2 * i + 1);
        let src = if is_k {
            heads * hd + head * hd
        } else {
            head * hd
        };
        let c = table[2 * (pos * half + i)];
        let s = table[2 * (pos * half + i) + 1];
        let x0 = qkv[src + a];
        let x1 = qkv[src + b];
        let mut r0 = x0 * c - x1 * s;
        let mut r1 = x0 * s + x1 * c;
        if round {
            r0 = round_to_f16(r0);
            r1 = round_to_f16(r1);
        }
        if is_k {
            let dst = head * cache_stride + pos * hd;
            k_cache[dst + a] = r0;
            k_cache[dst + b] = r1;
        } else {
            q[head * hd + a] = r0;
            q[head * hd + b] = r1;
        }
    } else {
        let j = p - nq - nk;
        let mut v = qkv[(heads + kv_heads) * hd + j];
        if round {
            v = round_to_f16(v);
        }
        v_cache[(j / hd) * cache_stride + pos * hd + j % hd] = v;
    }
}

/// Whether `a` and `b` are the same buffers, in order.
fn same_buffers(a: &[CubeTensor], b: &[CubeTensor]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            a.handle.memory.descriptor().id == b.handle.memory.descriptor().id
                && a.handle.offset_start == b.handle.offset_start
        })
}

/// The step's own buffers, on the recording client (f32 unless noted).
struct Scratch {
    /// `[token, pos]` (u32).
    input: CubeTensor,
    /// The residual stream, `[1, d_model]`, and its normalised copy.
    x: CubeTensor,
    xn: CubeTensor,
    /// Query, key and value side by side, `[1, qd + 2 kvd]`.
    qkv: CubeTensor,
    /// Rotated (rounded) queries, `[heads, 1, hd]`.
    q: CubeTensor,
    /// Attention output `[1, qd]`.
    att: CubeTensor,
    /// `x + attention`, `[1, d_model]`.
    h: CubeTensor,
    /// SwiGLU of gate and up, `[1, d_ff]`.
    s: CubeTensor,
    /// `[1, vocab]`.
    logits: CubeTensor,
    /// A product's activations as 8-bit blocks (packed bytes, scales), sized for the widest.
    xq: CubeTensor,
    xd: CubeTensor,
    /// `(cos, sin)` of positions `0..capacity`.
    table: CubeTensor,
    /// Per layer, the Q, K and V biases side by side (`qwen2`; empty otherwise).
    biases: Vec<CubeTensor>,
}

/// A decode step ready to run: its plan, the tensors it reads and writes, and its recording
/// once made.
struct Recorded {
    /// The recording client: pinned to one stream, so input writes, replays and the logits'
    /// read are ordered on it whatever thread calls.
    client: Client,
    plan: Arc<StepPlan>,
    norms: Vec<CubeTensor>,
    biases: Vec<CubeTensor>,
    kv: Vec<CubeTensor>,
    cap: usize,
    scratch: Scratch,
    graph: Option<Graph>,
    /// Whether recording was tried (a backend that refused runs the launches each step).
    tried: bool,
}

/// The last sequence's step. One: several sequences decode together as a batch (the eager
/// path), so a lone step is the common case and one recording serves it.
static RECORDED: Mutex<Option<Recorded>> = Mutex::new(None);

/// [`crate::step::decode_step`] on the cube backend: the step's logits `[1, vocab]` (a buffer
/// the next step overwrites: read it first), or `None` when [`takes`] refuses the model.
pub(crate) fn decode_step(
    output_norm: CubeTensor,
    mut norms: Vec<CubeTensor>,
    biases: Vec<CubeTensor>,
    kv: Vec<CubeTensor>,
    plan: &Arc<StepPlan>,
    token: u32,
    pos: usize,
) -> Option<CubeTensor> {
    norms.push(output_norm);
    let cap = takes(&norms, &biases, &kv, plan)?;
    if pos >= cap || token as usize >= plan.dims.vocab {
        return None;
    }
    let mut guard = RECORDED.lock().unwrap_or_else(PoisonError::into_inner);
    let current = guard.as_ref().is_some_and(|r| {
        same_buffers(&r.norms, &norms)
            && same_buffers(&r.biases, &biases)
            && same_buffers(&r.kv, &kv)
            && Arc::ptr_eq(&r.plan.freqs, &plan.freqs)
    });
    if !current {
        // The old recording (and the buffers it holds) goes before the new one's scratch.
        *guard = None;
        *guard = Some(Recorded::new(norms, biases, kv, Arc::clone(plan), cap));
    }
    let r = guard.as_mut()?;
    r.run(token, pos);
    Some(r.scratch.logits.clone())
}

/// The cache capacity if the step can run this model here: every matrix has a device decoder,
/// heads fit the attention kernel, the cache is packed `[kv_heads, capacity, head_dim]` rows,
/// and the tensors are as many as the plan's layers need.
fn takes(
    norms: &[CubeTensor],
    biases: &[CubeTensor],
    kv: &[CubeTensor],
    plan: &StepPlan,
) -> Option<usize> {
    let d = &plan.dims;
    let layers = plan.layers.len();
    let weights = plan
        .layers
        .iter()
        .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down])
        .chain([&plan.embed, &plan.output]);
    let decodable = weights
        .into_iter()
        .all(|w| layout(w.ggml_type(), w.cols()).is_some());
    let counts = norms.len() == 2 * layers + 1
        && (biases.is_empty() || biases.len() == 3 * layers)
        && kv.len() == 2 * layers;
    if !decodable
        || !counts
        || d.head_dim > 2 * ROW_THREADS as usize
        || !d.head_dim.is_multiple_of(2)
    {
        return None;
    }
    let [kvh, cap, hd] = kv[0].shape().dims::<3>();
    let packed = kv.iter().all(|t| {
        t.dtype == DType::F32
            && t.shape().dims::<3>() == [kvh, cap, hd]
            && t.meta.strides()[..] == [cap * hd, hd, 1]
    });
    let dense = norms
        .iter()
        .chain(biases)
        .all(|t| t.dtype == DType::F32 && t.is_contiguous());
    (packed && dense && kvh == d.n_kv_heads && hd == d.head_dim).then_some(cap)
}

impl Recorded {
    fn new(
        norms: Vec<CubeTensor>,
        biases: Vec<CubeTensor>,
        kv: Vec<CubeTensor>,
        plan: Arc<StepPlan>,
        cap: usize,
    ) -> Recorded {
        let like = &kv[0];
        let mut client = like.client.clone();
        // SAFETY: a stream id names a queue of this device (this one the cache was made on);
        // every launch, write and read of the step goes through this client, so they are
        // ordered on that one queue whichever thread calls.
        #[allow(unsafe_code, reason = "cubecl's stream pinning is an unsafe fn")]
        unsafe {
            client.set_stream(like.handle.stream)
        };
        let d = plan.dims;
        let (qd, kvd) = (d.n_heads * d.head_dim, d.n_kv_heads * d.head_dim);
        let f32s = |cols: usize| {
            CubeTensor::new_contiguous(
                client.clone(),
                like.device.clone(),
                Shape::new([1, cols]),
                client.empty(cols * 4),
                DType::F32,
            )
        };
        let mut angles = Vec::with_capacity(cap * plan.freqs.half);
        plan.freqs.angles(0, cap, &mut angles);
        let table: Vec<f32> = angles.iter().flat_map(|&(c, s)| [c, s]).collect();
        let (xq, xd) = q8_buffers(like, d.d_model.max(qd).max(d.d_ff));
        let scratch = Scratch {
            xq,
            xd,
            input: CubeTensor::new_contiguous(
                client.clone(),
                like.device.clone(),
                Shape::new([2]),
                client.create_from_slice(&[0u8; 8]),
                DType::U32,
            ),
            x: f32s(d.d_model),
            xn: f32s(d.d_model),
            qkv: f32s(qd + 2 * kvd),
            q: f32s(qd),
            att: f32s(qd),
            h: f32s(d.d_model),
            s: f32s(d.d_ff),
            logits: f32s(d.vocab),
            biases: biases
                .chunks_exact(3)
                .map(|b| f32_contiguous(Cube::float_cat(b.to_vec(), 1)))
                .collect(),
            table: CubeTensor::new_contiguous(
                client.clone(),
                like.device.clone(),
                Shape::new([table.len()]),
                client.create_from_slice(f32::as_bytes(&table)),
                DType::F32,
            ),
        };
        Recorded {
            client,
            plan,
            norms,
            biases,
            kv,
            cap,
            scratch,
            graph: None,
            // `AIRLOCK_GPU_RECORD=off`: launch the step's kernels every time, never record (a
            // diagnostic, to tell a recording fault from a kernel fault).
            // Recording needs every launch on one stream (`device.rs` sets it): a wait on
            // another stream inside the recording invalidates it, and a failed recording
            // leaves every buffer it wrote (the cache too) unreadable.
            tried: std::env::var("AIRLOCK_GPU_RECORD").is_ok_and(|v| v == "off")
                || cubecl_environment::stream::policy() != StreamPolicy::Single,
        }
    }

    /// Runs the step for `token` at `pos`: replays the recording, or records it (the warm-up
    /// run computes this step), or launches each kernel where recording was refused.
    fn run(&mut self, token: u32, pos: usize) {
        let pos = u32::try_from(pos).expect("positions fit u32");
        self.client.write(
            &self.scratch.input.handle,
            Bytes::from_elems(vec![token, pos]),
        );
        if let Some(graph) = &self.graph {
            // SAFETY: every buffer the recording touches is held by `self` (scratch, norms,
            // biases, cache tensors) or by the process-lifetime weight and stand-in caches;
            // the input was written and the logits are read on the recording's stream.
            #[allow(unsafe_code, reason = "cubecl's graph replay is an unsafe fn")]
            let replayed = unsafe { graph.replay() };
            if replayed.is_ok() {
                crate::step::count_replay();
                return;
            }
            // A refused replay ran nothing: drop the recording and launch directly from now on.
            self.graph = None;
        }
        if self.tried {
            self.launch();
            return;
        }
        self.tried = true;
        if self.client.graph_prepare().is_err() {
            self.launch();
            return;
        }
        // The warm-up run computes this step and leaves the pools holding every allocation
        // the recorded run will ask for.
        self.launch();
        if self.client.start_capture().is_ok() {
            self.launch();
        }
        // Ends a window that opened, and a capture that was only prepared.
        self.graph = self.client.stop_capture().ok();
    }

    /// Every launch of the step, in the eager path's order.
    fn launch(&self) {
        let (p, s, c) = (&self.plan, &self.scratch, &self.client);
        let d = p.dims;
        let (h, kvh, hd) = (d.n_heads, d.n_kv_heads, d.head_dim);
        let kvd = kvh * hd;
        let eps = d.eps as f32;
        let neox = p.freqs.style == RopeStyle::Neox;
        let round = p.round_kv_f16;
        let stride = self.cap * hd;
        let embed = &p.embed;
        let (count, dim) = elementwise(&s.x, d.d_model / 32);
        embed_kernel::launch(
            c,
            count,
            dim,
            device_blocks(&s.x, embed).into_buffer_arg(),
            s.input.clone().into_buffer_arg(),
            s.x.clone().into_buffer_arg(),
            d.d_model,
            embed.row_bytes(),
            kind(embed),
        );
        for (l, w) in p.layers.iter().enumerate() {
            let acts = s.norm_acts(c, &s.x, &self.norms[2 * l], eps, [&w.wq, &w.wk, &w.wv]);
            qkv_product(&acts, w, s.biases.get(l), &s.qkv);
            let (k_cache, v_cache) = (&self.kv[2 * l], &self.kv[2 * l + 1]);
            let (count, dim) = elementwise(&s.qkv, (h + kvh) * hd / 2 + kvd);
            qkv_rope_kernel::launch(
                c,
                count,
                dim,
                s.qkv.clone().into_buffer_arg(),
                s.table.clone().into_buffer_arg(),
                s.input.clone().into_buffer_arg(),
                s.q.clone().into_buffer_arg(),
                k_cache.clone().into_buffer_arg(),
                v_cache.clone().into_buffer_arg(),
                h,
                kvh,
                hd,
                stride,
                neox,
                round,
            );
            attention_at_kernel::launch(
                c,
                CubeCount::Static(u32::try_from(h).expect("heads fit a grid"), 1, 1),
                CubeDim::new_1d(ROW_THREADS),
                s.q.clone().into_buffer_arg(),
                k_cache.clone().into_buffer_arg(),
                v_cache.clone().into_buffer_arg(),
                s.input.clone().into_buffer_arg(),
                s.att.clone().into_buffer_arg(),
                h,
                kvh,
                hd,
                stride,
                (1.0 / (hd as f64).sqrt()) as f32,
                round,
            );
            matvec_into(
                &s.acts(&s.att, h * hd, [&w.wo]),
                &w.wo,
                kind(&w.wo),
                1,
                &s.h,
                d.d_model,
                0,
                Some(&s.x),
            );
            let acts = s.norm_acts(c, &s.h, &self.norms[2 * l + 1], eps, [&w.gate, &w.up]);
            swiglu_product(&acts, w, &s.s);
            matvec_into(
                &s.acts(&s.s, d.d_ff, [&w.down]),
                &w.down,
                kind(&w.down),
                1,
                &s.x,
                d.d_model,
                0,
                Some(&s.h),
            );
        }
        let acts = s.norm_acts(c, &s.x, &self.norms[2 * p.layers.len()], eps, [&p.output]);
        matvec_into(
            &acts,
            &p.output,
            kind(&p.output),
            1,
            &s.logits,
            d.vocab,
            0,
            None,
        );
    }
}

impl Scratch {
    /// `x` (`values` wide) as a product with `ws` takes it: quantized into the step's blocks
    /// first where the product takes 8-bit activations ([`q8_block`]).
    fn acts<'a, const N: usize>(
        &'a self,
        x: &'a CubeTensor,
        values: usize,
        ws: [&QWeight; N],
    ) -> Acts<'a> {
        let q8 = q8_block(ws).map(|per| {
            quantize_into(x, values, per, &self.xq, &self.xd);
            (&self.xq, &self.xd)
        });
        Acts { x, q8 }
    }

    /// `xn = rms_norm(x) · norm` (one row of `d_model`), as a product with `ws` takes it: with
    /// 8-bit activations normalised and quantized into the step's blocks in one launch.
    fn norm_acts<'a, const N: usize>(
        &'a self,
        c: &Client,
        x: &CubeTensor,
        norm: &CubeTensor,
        eps: f32,
        ws: [&QWeight; N],
    ) -> Acts<'a> {
        let d = self.xn.shape().num_elements();
        let Some(per) = q8_block(ws) else {
            rms_norm(c, x, norm, &self.xn, d, eps);
            return Acts {
                x: &self.xn,
                q8: None,
            };
        };
        rms_norm_q8_kernel::launch(
            c,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(ROW_THREADS),
            x.clone().into_buffer_arg(),
            norm.clone().into_buffer_arg(),
            self.xn.clone().into_buffer_arg(),
            self.xq.clone().into_buffer_arg(),
            self.xd.clone().into_buffer_arg(),
            d,
            eps,
            per,
        );
        Acts {
            x: &self.xn,
            q8: Some((&self.xq, &self.xd)),
        }
    }
}

/// `out = rms_norm(x) · w` for one row of `d`.
fn rms_norm(c: &Client, x: &CubeTensor, w: &CubeTensor, out: &CubeTensor, d: usize, eps: f32) {
    rms_norm_kernel::launch(
        c,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(ROW_THREADS),
        x.clone().into_buffer_arg(),
        w.clone().into_buffer_arg(),
        out.clone().into_buffer_arg(),
        d,
        eps,
    );
}

/// `w`'s device decoder ([`takes`] checked that every matrix has one).
fn kind(w: &QWeight) -> u32 {
    layout(w.ggml_type(), w.cols()).expect("checked by takes()")
}

/// Rows per cube of `rows` for the one-token products.
fn row_cubes(rows: usize) -> CubeCount {
    CubeCount::Static(
        u32::try_from(rows.div_ceil(ROWS_PER_CUBE as usize)).expect("rows fit a grid"),
        1,
        1,
    )
}

/// `out = x · [Wq; Wk; Wv]ᵀ (+ bias)` for one token, one launch.
fn qkv_product(acts: &Acts, w: &LayerWeights, bias: Option<&CubeTensor>, out: &CubeTensor) {
    let (q, k, v) = (&w.wq, &w.wk, &w.wv);
    let x = acts.x;
    let (xa, xq, xd, q8) = acts.args();
    q_matvec3_kernel::launch(
        &x.client,
        row_cubes(q.rows() + k.rows() + v.rows()),
        CubeDim::new_2d(LANES, ROWS_PER_CUBE),
        xa.into_buffer_arg(),
        xq.into_buffer_arg(),
        xd.into_buffer_arg(),
        device_blocks(x, q).into_buffer_arg(),
        device_blocks(x, k).into_buffer_arg(),
        device_blocks(x, v).into_buffer_arg(),
        bias.cloned()
            .unwrap_or_else(|| unread(x, Unread::Bias))
            .into_buffer_arg(),
        out.clone().into_buffer_arg(),
        q.cols(),
        q.rows(),
        k.rows(),
        v.rows(),
        q.row_bytes(),
        k.row_bytes(),
        v.row_bytes(),
        kind(q),
        kind(k),
        kind(v),
        ROWS_PER_CUBE,
        plane_sum_fits(&x.client),
        bias.is_some(),
        q8,
    );
}

/// `out = silu(x · Gateᵀ) · (x · Upᵀ)` for one token, one launch.
fn swiglu_product(acts: &Acts, w: &LayerWeights, out: &CubeTensor) {
    let (g, u) = (&w.gate, &w.up);
    let x = acts.x;
    let (xa, xq, xd, q8) = acts.args();
    q_swiglu_kernel::launch(
        &x.client,
        row_cubes(g.rows()),
        CubeDim::new_2d(LANES, ROWS_PER_CUBE),
        xa.into_buffer_arg(),
        xq.into_buffer_arg(),
        xd.into_buffer_arg(),
        device_blocks(x, g).into_buffer_arg(),
        device_blocks(x, u).into_buffer_arg(),
        out.clone().into_buffer_arg(),
        g.rows(),
        g.cols(),
        g.row_bytes(),
        u.row_bytes(),
        kind(g),
        kind(u),
        ROWS_PER_CUBE,
        plane_sum_fits(&x.client),
        q8,
    );
}
