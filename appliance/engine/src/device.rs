//! Which backend runs the model: flex on the CPU (always built), or a cubecl GPU runtime when
//! the crate is built with the `wgpu` or `cuda` feature.
//!
//! The model code is the same on every backend: tensors are burn's dispatch `Tensor`s and the
//! device they were created on picks the backend. Both backends implement every extension op
//! the model uses ([`crate::ops`], [`crate::fused`], [`crate::fused_ffn`]): flex with this
//! crate's CPU kernels, the cube backend with CubeCL kernels (`cube/`).

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{EngineError, Result};

/// A backend the engine can run on, as named on the command line and in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// burn's flex backend with this crate's SIMD kernels (the default).
    #[default]
    Cpu,
    /// The wgpu runtime (Vulkan, Metal, DX12): needs the `wgpu` feature.
    Wgpu,
    /// The CUDA runtime (driver and NVRTC loaded at run time): needs the `cuda` feature.
    Cuda,
}

impl Backend {
    /// The name used on the command line and in the policy.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// Backends compiled into this build.
    pub fn available() -> Vec<Backend> {
        let mut v = vec![Backend::Cpu];
        if cfg!(feature = "wgpu") {
            v.push(Backend::Wgpu);
        }
        if cfg!(feature = "cuda") {
            v.push(Backend::Cuda);
        }
        v
    }

    /// The burn device of this backend (the first GPU for `wgpu`/`cuda`), or
    /// [`EngineError::BackendUnavailable`] if the build lacks its feature.
    ///
    /// Creating the device does not touch the hardware: a missing driver shows up at the first
    /// tensor operation (burn panics there, with the runtime's message).
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => {
                one_stream();
                Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
            }
            #[cfg(feature = "cuda")]
            Backend::Cuda => {
                one_stream();
                Ok(Device::cuda(0))
            }
            #[allow(unreachable_patterns, reason = "reachable when a GPU feature is off")]
            other => Err(EngineError::BackendUnavailable {
                backend: other.name(),
                available: Backend::available()
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// Every GPU launch on one stream (cubecl's default is a stream per host thread).
///
/// A forward pass runs on whichever rayon worker picks it up, so per-thread streams make one
/// sequence's work hop streams: each hop is a cross-stream wait, and a wait inside a recorded
/// decode step (`cube/step.rs`) invalidates the recording (the H100 refused it with
/// `CUDA_ERROR_STREAM_CAPTURE_INVALIDATED`). The engine's GPU work is one sequence of steps
/// anyway. Set before the device's first launch; a later call does not move resolved streams.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn one_stream() {
    use cubecl_environment::stream::{StreamPolicy, set_policy};
    set_policy(StreamPolicy::Single);
}

impl Backend {
    /// Runs one small computation on this backend and reads the result back, then a chain of
    /// [`Probe::CHAIN`] small operations: `Ok` with how long each took (a GPU runtime's start
    /// is in the first), or why the backend cannot run here
    /// ([`EngineError::BackendUnavailable`] when not built in, [`EngineError::BackendFailed`]
    /// with the runtime's message: no driver, no device, no libdevice, ... or a wrong sum).
    pub fn probe(self) -> Result<Probe> {
        let device = self.device()?;
        let failed = |message: String| EngineError::BackendFailed {
            backend: self.name(),
            message,
        };
        let sum_after = |ops: usize| {
            let mut x = burn::tensor::Tensor::<1>::from_data(
                burn::tensor::TensorData::new(vec![1f32, 2.0, 3.0], [3]),
                &device,
            );
            for _ in 0..ops.max(1) {
                x = x.add_scalar(1.0);
            }
            x.sum().into_scalar::<f32>()
        };
        let timed = |ops: usize| -> Result<std::time::Duration> {
            let start = std::time::Instant::now();
            let sum = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sum_after(ops)))
                .map_err(|panic| failed(crate::error::panic_message(panic.as_ref())))?;
            let expected = 6.0 + 3.0 * ops.max(1) as f32;
            if sum == expected {
                Ok(start.elapsed())
            } else {
                Err(failed(format!(
                    "computed 1+2+3 (+1 each, {} times) = {sum}, not {expected}",
                    ops.max(1)
                )))
            }
        };
        let first = timed(1)?;
        // Twice: the first chain may still compile or allocate; the second is the cost.
        timed(Probe::CHAIN)?;
        let chain = timed(Probe::CHAIN)?;
        Ok(Probe {
            first,
            per_op: chain / Probe::CHAIN as u32,
        })
    }
}

/// What [`Backend::probe`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// The first computation and its read-back, with the runtime's start.
    pub first: std::time::Duration,
    /// One small operation of a chain of [`Probe::CHAIN`] (each a kernel launch on a GPU),
    /// the read-back shared: what a forward pass pays per operation besides its arithmetic.
    pub per_op: std::time::Duration,
}

impl Probe {
    /// Operations in the timed chain.
    pub const CHAIN: usize = 200;
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Backend, String> {
        match s {
            "cpu" => Ok(Backend::Cpu),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            _ => Err(format!("unknown backend {s:?}: expected cpu, wgpu or cuda")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in [Backend::Cpu, Backend::Wgpu, Backend::Cuda] {
            assert_eq!(b.name().parse::<Backend>(), Ok(b));
        }
        assert!("gpu".parse::<Backend>().is_err());
    }

    #[test]
    fn cpu_is_always_available() {
        assert!(Backend::Cpu.device().is_ok());
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn wgpu_without_feature_is_refused() {
        assert!(matches!(
            Backend::Wgpu.device(),
            Err(EngineError::BackendUnavailable {
                backend: "wgpu",
                ..
            })
        ));
    }
}
