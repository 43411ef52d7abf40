//! `airlock doctor`: whether each inference backend of this build can run on this machine, and
//! what the machine offers a GPU backend (the NVIDIA driver, its GPUs and device nodes, the
//! libraries the CUDA runtime loads), so an operator learns why a GPU cannot be used before
//! the service refuses to start on it.
//!
//! Everything is read from local files (`/proc/driver/nvidia`, `/dev`, library directories)
//! and one small computation per backend; nothing is downloaded or spawned.
use std::path::{Path, PathBuf};

use airlock_engine::Backend;

/// Check which inference backends can run here: the NVIDIA driver and GPUs found, the
/// libraries the CUDA runtime needs, and one computation on each backend of this build.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock doctor                 # every backend this build includes\n  airlock doctor --device cuda   # only CUDA: exit 0 if it runs here and its fused ops agree with the CPU\n\n\
A GPU backend needs its cargo feature (scripts/build-gpu.sh; README \"GPU\"). CUDA needs an\nNVIDIA driver of CUDA 12.8 or newer (libcuda.so.1) and libdevice.10.bc ($CUDA_PATH/nvvm/libdevice);\nunder systemd, the unit's drop-in must allow /dev/nvidia* (README \"GPU\").\n\n\
Exit codes: 0 every probed backend ran, 1 one could not, 64 invalid command line."
)]
pub struct Args {
    /// Probe only this backend (cpu, wgpu, cuda); default: every backend this build includes.
    #[arg(long)]
    device: Option<Backend>,
}

/// Where the CUDA runtime (cudarc) and cubecl look for what they load.
const LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/cuda/lib64",
    "/usr/local/cuda/compat",
];
const CUDA_ROOTS: &[&str] = &["/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda", "/usr"];

pub fn run(args: Args) -> anyhow::Result<()> {
    let built: Vec<&str> = Backend::available().iter().map(|b| b.name()).collect();
    println!("build: backends {}", built.join(", "));
    nvidia_report();
    let probe = match args.device {
        Some(b) => vec![b],
        None => Backend::available(),
    };
    let mut failed = Vec::new();
    for backend in probe {
        match backend.probe() {
            Ok(p) => {
                println!(
                    "{backend}: runs here (first result in {} ms; {:.1} µs per small operation)",
                    p.first.as_millis(),
                    p.per_op.as_secs_f64() * 1e6
                );
                if backend != Backend::Cpu && !fused_ops_agree(backend) {
                    failed.push(backend.name());
                }
            }
            Err(e) => {
                println!("{backend}: cannot run here: {e}");
                failed.push(backend.name());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("backend(s) that cannot run here: {}", failed.join(", "))
    }
}

/// Runs each fused op on `backend` and on the CPU: one line when all agree within
/// [`airlock_engine::verify::OP_TOLERANCE`] (with the worst), else one line per op that does not. True if all agree.
fn fused_ops_agree(backend: Backend) -> bool {
    match airlock_engine::verify::fused_ops(backend) {
        Ok(checks) => {
            let wrong: Vec<_> = checks
                .iter()
                // Beyond the tolerance, or NaN (incomparable): wrong.
                .filter(|c| !c.agrees())
                .collect();
            for c in &wrong {
                println!(
                    "{backend}: WRONG {}: max |device - cpu| {:.1e} of {:.2}",
                    c.op, c.worst, c.scale
                );
            }
            if wrong.is_empty() {
                let worst = checks.iter().map(|c| c.relative()).fold(0f64, f64::max);
                println!(
                    "{backend}: {} fused-op checks agree with the CPU (worst {worst:.1e} of the \
                     largest value)",
                    checks.len()
                );
            }
            wrong.is_empty()
        }
        Err(e) => {
            println!("{backend}: fused ops cannot run: {e}");
            false
        }
    }
}

/// The NVIDIA driver, GPUs, device nodes, libcuda and libdevice, as found on this machine.
fn nvidia_report() {
    match std::fs::read_to_string("/proc/driver/nvidia/version") {
        Ok(v) => println!("nvidia driver: {}", v.lines().next().unwrap_or("").trim()),
        Err(_) => println!("nvidia driver: none loaded (no /proc/driver/nvidia/version)"),
    }
    for gpu in sorted_entries(Path::new("/proc/driver/nvidia/gpus")) {
        let info = std::fs::read_to_string(gpu.join("information")).unwrap_or_default();
        let model = info
            .lines()
            .find_map(|l| l.strip_prefix("Model:"))
            .map(str::trim)
            .unwrap_or("(model unknown)");
        let bus = gpu.file_name().unwrap_or_default().to_string_lossy();
        println!("gpu {bus}: {model}");
    }
    let nodes: Vec<String> = sorted_entries(Path::new("/dev"))
        .into_iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("nvidia"))
        .collect();
    if nodes.is_empty() {
        println!("device nodes: no /dev/nvidia* (no driver, or hidden from this service)");
    } else {
        println!("device nodes: /dev/{}", nodes.join(", /dev/"));
    }
    let mut dirs: Vec<PathBuf> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    dirs.extend(LIB_DIRS.iter().map(PathBuf::from));
    match dirs
        .iter()
        .map(|d| d.join("libcuda.so.1"))
        .find(|p| p.exists())
    {
        Some(p) => println!("libcuda: {}", p.display()),
        None => println!("libcuda: libcuda.so.1 not found (the driver's user-space library)"),
    }
    let roots = std::env::var("CUDA_PATH")
        .ok()
        .into_iter()
        .chain(CUDA_ROOTS.iter().map(|s| (*s).to_owned()));
    match roots
        .map(|r| Path::new(&r).join("nvvm/libdevice/libdevice.10.bc"))
        .find(|p| p.exists())
    {
        Some(p) => println!("libdevice: {}", p.display()),
        None => println!(
            "libdevice: libdevice.10.bc not found under $CUDA_PATH, {} (nvvm/libdevice/)",
            CUDA_ROOTS.join(", ")
        ),
    }
}

/// The entries of `dir`, sorted (none if it cannot be read).
fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}
