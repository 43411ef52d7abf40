//! [`Summary`]: what `airlock models inspect` prints about a validated GGUF file.

use std::collections::BTreeMap;
use std::fmt;

use crate::{GgmlType, GgufFile, Metadata};

/// Facts about a model file, for people. Built from an already validated [`GgufFile`], so it
/// cannot fail: metadata that is absent or of an unexpected type shows as unknown.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Summary {
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// GGUF version.
    pub version: u32,
    /// File size in bytes.
    pub file_size: u64,
    /// Sum of all tensors' element counts.
    pub parameters: u64,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Per tensor type: number of tensors and their data bytes.
    pub quantization: BTreeMap<GgmlType, (usize, u64)>,
    /// `<arch>.context_length`.
    pub context_length: Option<u64>,
    /// `<arch>.block_count` (layers).
    pub block_count: Option<u64>,
    /// `<arch>.embedding_length`.
    pub embedding_length: Option<u64>,
    /// `tokenizer.ggml.model` (`gpt2`, `llama`, ...).
    pub tokenizer_model: Option<String>,
    /// Length of `tokenizer.ggml.tokens`.
    pub vocab_size: Option<usize>,
    /// Whether `tokenizer.chat_template` is present.
    pub chat_template: bool,
}

fn opt_str(md: &Metadata, key: &str) -> Option<String> {
    md.get_opt::<&str>(key).ok().flatten().map(str::to_owned)
}

fn opt_u64(md: &Metadata, key: &str) -> Option<u64> {
    md.get_opt::<u64>(key).ok().flatten()
}

impl Summary {
    /// Summarises `f`.
    pub fn new(f: &GgufFile) -> Summary {
        let md = f.metadata();
        let architecture = opt_str(md, "general.architecture");
        let arch_key = |k: &str| {
            architecture
                .as_deref()
                .and_then(|a| opt_u64(md, &format!("{a}.{k}")))
        };
        let mut quantization: BTreeMap<GgmlType, (usize, u64)> = BTreeMap::new();
        for t in f.tensors() {
            let e = quantization.entry(t.ggml_type()).or_default();
            e.0 += 1;
            e.1 = e.1.saturating_add(t.n_bytes());
        }
        Summary {
            name: opt_str(md, "general.name"),
            version: f.version(),
            file_size: f.len(),
            parameters: f
                .tensors()
                .iter()
                .fold(0u64, |a, t| a.saturating_add(t.n_elements())),
            tensor_count: f.tensors().len(),
            quantization,
            context_length: arch_key("context_length"),
            block_count: arch_key("block_count"),
            embedding_length: arch_key("embedding_length"),
            tokenizer_model: opt_str(md, "tokenizer.ggml.model"),
            vocab_size: md.get_array("tokenizer.ggml.tokens").ok().map(|a| a.len()),
            chat_template: md.contains_key("tokenizer.chat_template"),
            architecture,
        }
    }
}

/// `1234567` → `"1.23 M"`.
fn si(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.2} B", n / 1e9),
        n if n >= 1e6 => format!("{:.2} M", n / 1e6),
        n if n >= 1e3 => format!("{:.2} K", n / 1e3),
        n => format!("{n}"),
    }
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unknown = || "unknown".to_owned();
        let num = |v: Option<u64>| v.map_or_else(unknown, |v| v.to_string());
        writeln!(
            f,
            "architecture:    {}",
            self.architecture.clone().unwrap_or_else(unknown)
        )?;
        writeln!(
            f,
            "name:            {}",
            self.name.clone().unwrap_or_else(unknown)
        )?;
        writeln!(f, "gguf version:    {}", self.version)?;
        writeln!(
            f,
            "file size:       {} ({} bytes)",
            mib(self.file_size),
            self.file_size
        )?;
        writeln!(
            f,
            "parameters:      {} in {} tensors",
            si(self.parameters),
            self.tensor_count
        )?;
        writeln!(f, "layers:          {}", num(self.block_count))?;
        writeln!(f, "embedding:       {}", num(self.embedding_length))?;
        writeln!(f, "context length:  {}", num(self.context_length))?;
        writeln!(
            f,
            "tokenizer:       {} ({} tokens)",
            self.tokenizer_model.clone().unwrap_or_else(unknown),
            self.vocab_size.map_or_else(unknown, |v| v.to_string())
        )?;
        writeln!(
            f,
            "chat template:   {}",
            if self.chat_template {
                "present"
            } else {
                "absent"
            }
        )?;
        write!(f, "quantization:")?;
        for (ty, (count, bytes)) in &self.quantization {
            write!(
                f,
                "\n  {:<6} {count:>4} tensors  {:>10}",
                ty.name(),
                mib(*bytes)
            )?;
        }
        Ok(())
    }
}
