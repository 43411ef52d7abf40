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

/// Largest |device − CPU| logit difference a GPU engine may show at load, relative to the
/// largest |logit|: f32 activations and another summation order give ~1e-3 on lavapipe
/// (`tests/engine/gpu.rs`); a wrong kernel gives differences of the order of the logits.
const SELF_CHECK_TOLERANCE: f64 = 1e-2;

/// `Ok` if `device`'s logits are within [`SELF_CHECK_TOLERANCE`] of the largest |logit| of
/// `reference` (the CPU's), else why not; a NaN or a length mismatch never agrees.
fn agree_with_cpu(device: &[f32], reference: &[f32]) -> std::result::Result<(), String> {
    if device.len() != reference.len() {
        return Err(format!(
            "self-check failed: {} logits from the device, {} from the CPU",
            device.len(),
            reference.len()
        ));
    }
    let scale = reference
        .iter()
        .fold(1f64, |m, &v| m.max(f64::from(v).abs()));
    let worst = device.iter().zip(reference).fold(0f64, |m, (&d, &r)| {
        let diff = (f64::from(d) - f64::from(r)).abs();
        // NaN from the device counts as the worst difference.
        if diff.is_nan() {
            f64::INFINITY
        } else {
            m.max(diff)
        }
    });
    if worst <= SELF_CHECK_TOLERANCE * scale {
        Ok(())
    } else {
        Err(format!(
            "self-check failed: logits differ from the CPU's by up to {worst:.3e} (largest logit \
             {scale:.2}, allowed {SELF_CHECK_TOLERANCE:.1e} of it); this device's results are \
             not trusted"
        ))
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
        let engine = Engine::from_file_on(file, path, &device)?;
        if backend != Backend::Cpu {
            engine.warm_up(backend)?;
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
    fn warm_up(&self, backend: Backend) -> Result<()> {
        let run = || -> Result<()> {
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
            self.self_check(backend)
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
    fn self_check(&self, backend: Backend) -> Result<()> {
        let cpu = Llama::load(&self.file, &Device::flex())?.with_exact_activations(true);
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
            return Ok(()); // a toy context: nothing to compare at a meaningful length
        }
        let logits = |m: &Llama| -> Result<Vec<f32>> {
            let mut cache = m.new_cache();
            let slot = cache.allocate();
            let mut all = Vec::new();
            for tokens in &steps {
                all.extend(m.forward(&[SeqInput { slot, tokens }], &mut cache, Logits::All)?);
            }
            Ok(all)
        };
        let (device, reference) = (logits(&self.model)?, logits(&cpu)?);
        agree_with_cpu(&device, &reference).map_err(|message| EngineError::BackendFailed {
            backend: backend.name(),
            message,
        })
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
        Ok(Engine {
            model,
            tokenizer,
            template,
            file,
            path: path.to_owned(),
            name,
            sha256: OnceLock::new(),
        })
    }

    /// The model.
    pub fn model(&self) -> &Llama {
        &self.model
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
        let t = self
            .template
            .as_ref()
            .ok_or_else(|| EngineError::NoChatTemplate {
                model: self.name.clone(),
            })?;
        let rendered = t.render_delimited(messages, true)?;
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
        assert_eq!(
            super::agree_with_cpu(&[3.02, -1.01, 0.49, 2.0], &cpu),
            Ok(())
        );
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
}
