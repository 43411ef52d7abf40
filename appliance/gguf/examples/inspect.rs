//! Prints the summary of a GGUF file and how long validation took (what `airlock models
//! inspect` will show). Usage: `cargo run -p airlock-gguf --example inspect -- FILE.gguf`
use std::time::Instant;

use airlock_gguf::{GgufFile, Summary};

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: inspect FILE.gguf");
        return std::process::ExitCode::from(64);
    };
    let t0 = Instant::now();
    match GgufFile::open(&path) {
        Ok(f) => {
            let dt = t0.elapsed();
            println!("{}", Summary::new(&f));
            eprintln!("opened and validated in {:.1} ms", dt.as_secs_f64() * 1e3);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", std::path::Path::new(&path).display());
            std::process::ExitCode::FAILURE
        }
    }
}
