//! [`Engine`]: a loaded model with its tokenizer and chat template, shareable across threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use airlock_gguf::GgufFile;
use airlock_tokenizer::{ChatMessage, ChatTemplate, EncodeOptions, Tokenizer};
use burn::tensor::Device;
use sha2::{Digest, Sha256};

use crate::device::Backend;
use crate::error::{EngineError, Result};
use crate::model::{Llama, Logits, SeqInput};
use crate::trace::{self, Traced};

/// Largest |device − CPU| logit difference a GPU engine may show at load, relative to the
/// largest |logit|: f32 activations and another summation order give ~1e-3 on lavapipe
/// (`tests/engine/gpu.rs`); a wrong kernel gives differences of the order of the logits.
const SELF_CHECK_TOLERANCE: f64 = 1e-2;

/// How closely a GPU engine's logits followed the CPU's in its load-time check
/// ([`Engine::self_check`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelfCheck {
    /// Largest |device − CPU| logit difference.
    pub worst: f64,
    /// What it is measured against: the largest |logit| of the CPU's, at least 1.0.
    pub scale: f64,
}

impl SelfCheck {
    /// `worst / scale`: the self-check refuses a device beyond [`SELF_CHECK_TOLERANCE`].
    pub fn relative(&self) -> f64 {
        self.worst / self.scale
    }
}

impl std::fmt::Display for SelfCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "logits within {:.2e} of the CPU's ({:.1e} of the largest logit {:.2}; allowed \
             {SELF_CHECK_TOLERANCE:.0e})",
            self.worst,
            self.relative(),
            self.scale
        )
    }
}

/// The largest |a − b| and the largest |b| (at least 1.0), or `None` if the lengths differ;
/// a NaN difference counts as infinite.
pub(crate) fn measure(a: &[f32], b: &[f32]) -> Option<SelfCheck> {
    if a.len() != b.len() {
        return None;
    }
    let scale = b.iter().fold(1f64, |m, &v| m.max(f64::from(v).abs()));
    let worst = a.iter().zip(b).fold(0f64, |m, (&d, &r)| {
        let diff = (f64::from(d) - f64::from(r)).abs();
        if diff.is_nan() {
            f64::INFINITY
        } else {
            m.max(diff)
        }
    });
    Some(SelfCheck { worst, scale })
}

/// `Ok` with the measure if `device`'s logits are within [`SELF_CHECK_TOLERANCE`] of the
/// largest |logit| of `reference` (the CPU's), else why not; a NaN or a length mismatch never
/// agrees.
fn agree_with_cpu(device: &[f32], reference: &[f32]) -> std::result::Result<SelfCheck, String> {
    let Some(m) = measure(device, reference) else {
        return Err(format!(
            "self-check failed: {} logits from the device, {} from the CPU",
            device.len(),
            reference.len()
        ));
    };
    if m.worst <= SELF_CHECK_TOLERANCE * m.scale {
        Ok(m)
    } else {
        Err(format!(
            "self-check failed: logits differ from the CPU's by up to {:.3e} (largest logit \
             {:.2}, allowed {SELF_CHECK_TOLERANCE:.1e} of it); this device's results are not \
             trusted",
            m.worst, m.scale
        ))
    }
}

/// Relative difference beyond which a traced intermediate counts as diverging in the
/// self-check's report: f32 activations in another order stay near 1e-5.
const DIVERGENCE: f64 = 1e-3;

/// Where two traces of the same forward passes (`steps[i]` is call `i`'s tensors) first part:
/// the first tensor whose values differ by more than [`DIVERGENCE`] of its largest |value|
/// (at least 1.0), and the worst tensor overall, in words.
fn first_divergence(device: &[Vec<Traced>], cpu: &[Vec<Traced>]) -> String {
    let mut first = None;
    let mut worst: Option<(f64, String)> = None;
    for (call, (d, c)) in device.iter().zip(cpu).enumerate() {
        for (dt, ct) in d.iter().zip(c) {
            let at = format!("{} in forward call {}", ct.name, call + 1);
            if dt.name != ct.name || dt.shape != ct.shape {
                return format!(
                    "the traces part at {at}: device {} {:?}, CPU {} {:?}",
                    dt.name, dt.shape, ct.name, ct.shape
                );
            }
            let Some(m) = measure(&dt.values, &ct.values) else {
                return format!("{at}: {} values, CPU {}", dt.values.len(), ct.values.len());
            };
            let rel = m.relative();
            if first.is_none() && rel > DIVERGENCE {
                first = Some(format!(
                    "{at} ({rel:.1e} of its largest value {:.2})",
                    m.scale
                ));
            }
            if worst.as_ref().is_none_or(|(w, _)| rel > *w) {
                worst = Some((rel, at));
            }
        }
    }
    match (first, worst) {
        (Some(f), Some((w, at))) => format!("first diverging tensor {f}; worst {at} ({w:.1e})"),
        (None, Some((w, at))) => format!(
            "no intermediate beyond {DIVERGENCE:.0e}; worst {at} ({w:.1e}): the logits' product"
        ),
        _ => "nothing was traced".to_owned(),
    }
}

/// A model ready to generate. `Send + Sync`: hold it in an `Arc` and run [`crate::Batch`]
/// steps on a dedicated thread.
#[derive(Debug)]
pub struct Engine {
    model: Llama,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    file: Arc<GgufFile>,
    path: PathBuf,
    name: String,
    sha256: OnceLock<String>,
    /// The load-time check of a GPU engine (`None` on the CPU).
    self_check: Option<SelfCheck>,
    /// How embeddings pool hidden states, or why this model has none.
    pooling: std::result::Result<crate::embed::Pooling, String>,
}

impl Engine {
    /// Maps and validates `path`, builds the tokenizer and chat template from its metadata and
    /// loads the model on the CPU (flex). `threads` sizes the global rayon pool the kernels
    /// run on (default: all cores); it takes effect only for the first engine of a process.
    pub fn load(path: impl AsRef<Path>, threads: Option<usize>) -> Result<Engine> {
        Engine::load_on(path, threads, Backend::Cpu)
    }

    /// As [`Engine::load`], on `backend` (refused if this build lacks it).
    pub fn load_on(
        path: impl AsRef<Path>,
        threads: Option<usize>,
        backend: Backend,
    ) -> Result<Engine> {
        let path = path.as_ref();
        let device = backend.device()?;
        if let Some(n) = threads {
            // Fails only if the pool already exists (a second engine): keep that pool.
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build_global();
        }
        let file = Arc::new(GgufFile::open(path)?);
        let mut engine = Engine::from_file_on(file, path, &device)?;
        if backend != Backend::Cpu {
            engine.self_check = engine.warm_up(backend)?;
        }
        Ok(engine)
    }

    /// Runs the model once for each product shape it meets (1, 2, 4, 8 and 16 tokens: the GPU
    /// matrix-vector kernel's variants; 32, 128 and 512: the prompt path, whose matmul the
    /// runtime autotunes per size bucket) on a scratch cache, so a GPU runtime compiles its
    /// kernels, tunes and uploads the weights at load instead of in the first request (and in a
    /// benchmark's timed steps). A runtime that cannot run at all (no driver,
    /// no device: burn panics with the runtime's message) fails here, as an error, and so
    /// does one that computes wrongly ([`Engine::self_check`]).
    fn warm_up(&self, backend: Backend) -> Result<Option<SelfCheck>> {
        let run = || -> Result<Option<SelfCheck>> {
            let mut cache = self.model.new_cache();
            let slot = cache.allocate();
            let mut room = self.model.config().context_length;
            for n in [1, 2, 4, 8, 16, 32, 128, crate::batch::PROMPT_CHUNK] {
                if n > room {
                    break;
                }
                room -= n;
                let tokens = vec![0; n];
                self.model.forward(
                    &[SeqInput {
                        slot,
                        tokens: &tokens,
                    }],
                    &mut cache,
                    Logits::Last,
                )?;
            }
            self.check_against_cpu(backend)
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|panic| {
            Err(EngineError::BackendFailed {
                backend: backend.name(),
                message: crate::error::panic_message(panic.as_ref()),
            })
        })
    }

    /// The device's logits against the CPU's (flex, exact activations) on the same file: a
    /// 20-token prompt (the dequantize + matmul path), one decode step (the one-token kernel)
    /// and a 5-token continuation (the multi-token kernel). A GPU whose kernels or runtime
    /// compute wrongly must not serve: beyond [`SELF_CHECK_TOLERANCE`] of the largest logit
    /// the engine refuses to load, naming the difference. Costs one short CPU pass at load.
    ///
    /// The device runs the model's f32-activation twin (same weights on the device, other
    /// product kernels): 8-bit activations move a logit by up to a few percent of the largest
    /// (llama.cpp's too), and the CPU rounds them per 256 values for K-quants where the GPU
    /// rounds per 32, so only exact arithmetic on both sides compares tightly. The 8-bit
    /// products themselves are checked first, each weight type against an f64 reference of
    /// their arithmetic on this device ([`crate::verify::product_checks`]).
    fn check_against_cpu(&self, backend: Backend) -> Result<Option<SelfCheck>> {
        if let Some(wrong) = crate::verify::product_checks(&self.model.device)
            .into_iter()
            .find(|c| !c.agrees())
        {
            return Err(EngineError::BackendFailed {
                backend: backend.name(),
                message: format!(
                    "self-check: {} differs from its reference by {:.1e} of {:.2}",
                    wrong.op, wrong.worst, wrong.scale
                ),
            });
        }
        let twin = self.model.clone().with_exact_activations(true);
        let cpu = Llama::load_exact(&self.file, &Device::flex())?.with_exact_activations(true);
        let vocab = u32::try_from(self.model.config().vocab_size).unwrap_or(u32::MAX);
        let room = self.model.config().context_length;
        let steps: Vec<Vec<u32>> = [20usize, 1, 5]
            .iter()
            .scan(0u32, |next, &n| {
                let chunk = (0..n as u32)
                    .map(|i| (*next + i).wrapping_mul(7919).wrapping_add(11) % vocab.max(1))
                    .collect();
                *next += n as u32;
                Some(chunk)
            })
            .collect();
        if steps.iter().map(Vec::len).sum::<usize>() > room {
            return Ok(None); // a toy context: nothing to compare at a meaningful length
        }
        // Every step's logits, and with `traced` each step's intermediates.
        let run = |m: &Llama, traced: bool| -> Result<(Vec<f32>, Vec<Vec<Traced>>)> {
            let mut cache = m.new_cache();
            let slot = cache.allocate();
            let (mut all, mut traces) = (Vec::new(), Vec::new());
            for tokens in &steps {
                let mut step = || m.forward(&[SeqInput { slot, tokens }], &mut cache, Logits::All);
                if traced {
                    let (logits, t) = trace::capture(step);
                    all.extend(logits?);
                    traces.push(t);
                } else {
                    all.extend(step()?);
                }
            }
            Ok((all, traces))
        };
        let (device, reference) = (run(&twin, false)?.0, run(&cpu, false)?.0);
        match agree_with_cpu(&device, &reference) {
            Ok(m) => Ok(Some(m)),
            Err(verdict) => {
                // Say where: the same passes again with their intermediates, op by op.
                let (dev, cpu) = (run(&twin, true)?.1, run(&cpu, true)?.1);
                Err(EngineError::BackendFailed {
                    backend: backend.name(),
                    message: format!("{verdict}: {}", first_divergence(&dev, &cpu)),
                })
            }
        }
    }

    /// How closely this engine's logits followed the CPU's at load: `Some` for a GPU engine
    /// (which refuses to load beyond [`SELF_CHECK_TOLERANCE`]), `None` on the CPU or where the
    /// context is too short to check.
    pub fn self_check(&self) -> Option<SelfCheck> {
        self.self_check
    }

    /// As [`Engine::load`] for a file already opened (tests, in-memory models).
    pub fn from_file(file: Arc<GgufFile>, path: &Path) -> Result<Engine> {
        Engine::from_file_on(file, path, &Device::flex())
    }

    /// As [`Engine::from_file`], the model on `device`.
    pub fn from_file_on(file: Arc<GgufFile>, path: &Path, device: &Device) -> Result<Engine> {
        let model = Llama::load(&file, device)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let template = match tokenizer.chat_template_source() {
            Some(_) => Some(tokenizer.chat_template()?),
            None => None,
        };
        let name = file
            .metadata()
            .get_str("general.name")
            .map(str::to_owned)
            .ok()
            .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".to_owned());
        let pooling = crate::embed::Pooling::from_gguf(&file, model.config().arch.name())
            .map_err(|e| e.to_string());
        Ok(Engine {
            pooling,
            model,
            tokenizer,
            template,
            file,
            path: path.to_owned(),
            name,
            sha256: OnceLock::new(),
            self_check: None,
        })
    }

    /// The model.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// How this model's embeddings are pooled, or why it cannot give any (a reranker's
    /// `pooling_type`).
    pub fn pooling(&self) -> std::result::Result<crate::embed::Pooling, &str> {
        self.pooling.as_ref().copied().map_err(String::as_str)
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The mapped file.
    pub fn file(&self) -> &Arc<GgufFile> {
        &self.file
    }

    /// `general.name`, else the file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the file (hex), computed on first use.
    pub fn sha256(&self) -> &str {
        self.sha256.get_or_init(|| {
            let mut h = Sha256::new();
            h.update(self.file.bytes());
            h.finalize().iter().map(|b| format!("{b:02x}")).collect()
        })
    }

    /// True if the file has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// A conversation rendered with the file's chat template, ready for the assistant's turn,
    /// and its token ids. Special tokens come only from the template's own text: every
    /// message's content is encoded as plain text, so a client cannot forge a turn
    /// (`<|im_start|>system` in content costs its plain-text tokens). Rendered once.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<ChatPrompt> {
        self.chat_prompt_with_tools(messages, None)
    }

    /// Whether the chat template presents tools itself (uses the `tools` variable).
    pub fn template_uses_tools(&self) -> bool {
        self.template.as_ref().is_some_and(|t| t.uses_tools())
    }

    /// [`chat_prompt`](Self::chat_prompt) with `tools` (OpenAI tool objects) given to the
    /// template; their strings, like message content, are encoded as plain text.
    pub fn chat_prompt_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
    ) -> Result<ChatPrompt> {
        let t = self
            .template
            .as_ref()
            .ok_or_else(|| EngineError::NoChatTemplate {
                model: self.name.clone(),
            })?;
        let rendered = t.render_delimited_with_tools(messages, tools, true)?;
        let ids = self.tokenizer.encode_chat(&rendered)?;
        Ok(ChatPrompt {
            text: rendered.into_text(),
            ids,
        })
    }

    /// Token ids of a raw prompt: `parse_special` lets special-token text (`<|im_start|>`)
    /// become those tokens; BOS is added as the model says.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(
            text,
            EncodeOptions {
                parse_special,
                add_special: true,
            },
        )?)
    }
}

/// A chat prompt as the model sees it ([`Engine::chat_prompt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPrompt {
    /// The rendered text (template applied), for the audit record.
    pub text: String,
    /// Its token ids.
    pub ids: Vec<u32>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn engine_is_send_and_sync() {
        fn shareable<T: Send + Sync>() {}
        shareable::<super::Engine>();
        fn sendable<T: Send>() {}
        sendable::<crate::Batch>();
    }

    /// The self-check's verdict: within 1e-2 of the largest logit agrees; a wrong kernel's
    /// differences, a NaN or a missing row do not (and the message says by how much).
    #[test]
    fn the_self_check_refuses_what_differs_from_the_cpu() {
        let cpu = [3.0f32, -1.0, 0.5, 2.0];
        let ok = super::agree_with_cpu(&[3.02, -1.01, 0.49, 2.0], &cpu).unwrap();
        assert!((ok.worst - 0.02).abs() < 1e-6 && ok.scale == 3.0, "{ok:?}");
        let wrong = super::agree_with_cpu(&[-1.0, 3.0, 0.5, 2.0], &cpu).unwrap_err();
        assert!(
            wrong.contains("differ from the CPU's by up to 4.000e0"),
            "{wrong}"
        );
        assert!(super::agree_with_cpu(&[3.0, f32::NAN, 0.5, 2.0], &cpu).is_err());
        assert!(super::agree_with_cpu(&[3.0, -1.0, 0.5], &cpu).is_err());
        // Below 1.0 the tolerance is absolute (1e-2), so tiny logits cannot hide a bug.
        assert!(super::agree_with_cpu(&[0.02], &[0.0]).is_err());
    }

    fn traced(name: &str, values: &[f32]) -> super::Traced {
        super::Traced {
            name: name.to_owned(),
            shape: vec![values.len()],
            values: values.to_vec(),
        }
    }

    /// The report names the first intermediate beyond 1e-3 of its scale (with the forward call
    /// it came from) and the worst one, and says when the traces do not line up.
    #[test]
    fn the_divergence_report_names_the_first_and_the_worst_tensor() {
        let cpu = vec![
            vec![traced("attn_norm-0", &[1.0, 2.0]), traced("Qcur-0", &[4.0])],
            vec![traced("attn_norm-0", &[1.0, 2.0]), traced("Qcur-0", &[4.0])],
        ];
        let dev = vec![
            vec![traced("attn_norm-0", &[1.0, 2.0]), traced("Qcur-0", &[4.0])],
            vec![
                traced("attn_norm-0", &[1.0, 2.01]),
                traced("Qcur-0", &[8.0]),
            ],
        ];
        let r = super::first_divergence(&dev, &cpu);
        assert!(
            r.starts_with("first diverging tensor attn_norm-0 in forward call 2 (5.0e-3"),
            "{r}"
        );
        assert!(r.ends_with("worst Qcur-0 in forward call 2 (1.0e0)"), "{r}");
        assert!(super::first_divergence(&cpu, &cpu).starts_with("no intermediate beyond"));
        let other = vec![vec![traced("ffn_out-0", &[1.0, 2.0])]];
        assert!(
            super::first_divergence(&other, &cpu).starts_with("the traces part at attn_norm-0")
        );
    }
}
