//! Durable appends per second and added latency, against raw sled insert + flush.
//!
//! Run: `cargo bench -p audit --bench append` (env `AUDIT_BENCH_SECS`, default 3, sets the
//! time per row). For 1, 8 and 64 concurrent appenders it measures, in the same run:
//! - **audit**: `AuditLog::append` (record built, hashed, written, flushed; group commit);
//! - **sled**: the same number of threads each doing `insert` + `flush()` on a raw sled
//!   tree (the peer: what durability costs without our chain and batching).
//!
//! Targets: 64 appenders ≥ 10× the one-appender rate, p99 added latency < 5 ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use audit::{Actor, AuditLog, Config, Event, Kind};

fn event(i: u64) -> Event {
    Event::new(Kind::InferenceRequest)
        .actor(Actor {
            fingerprint: format!("{i:064x}"),
            subject: "CN=bench,OU=radiology".into(),
            roles: vec!["user".into()],
        })
        .peer("127.0.0.1:40000")
        .request_id(format!("req-{i}"))
        .prompt(format!(
            "prompt number {i} with some typical length of text"
        ))
        .tokens(42, 0)
        .status("accepted")
}

struct Row {
    ops: u64,
    secs: f64,
    p50: Duration,
    p99: Duration,
}

impl Row {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

/// Runs `threads` workers calling `op` until `secs` pass; collects every latency.
fn run<F>(threads: usize, secs: f64, op: Arc<F>) -> Row
where
    F: Fn(u64) + Send + Sync + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, op) = (stop.clone(), op.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = (t as u64) << 40;
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    op(i);
                    lat.push(t0.elapsed());
                    i += 1;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("worker"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Row {
        ops: lat.len() as u64,
        secs: elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let secs: f64 = std::env::var("AUDIT_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    println!(
        "audit append benchmark: {secs} s per row, real sled on disk (tempdir), fsync per flush"
    );
    println!(
        "{:>9} | {:>12} {:>8} {:>8} | {:>12} {:>8} {:>8} | {:>10}",
        "appenders",
        "audit op/s",
        "p50 ms",
        "p99 ms",
        "sled op/s",
        "p50 ms",
        "p99 ms",
        "audit/sled"
    );
    let mut one = None;
    let mut sixty_four = None;
    for threads in [1usize, 8, 64] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(AuditLog::open(dir.path(), Config::default()).expect("open"));
        let l = log.clone();
        let audit = run(
            threads,
            secs,
            Arc::new(move |i| {
                l.append(event(i)).expect("append");
            }),
        );
        log.close().expect("close");
        let records = log.len();
        drop(log);

        let raw_dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new()
            .path(raw_dir.path())
            .flush_every_ms(None)
            .open()
            .expect("sled");
        let tree = db.open_tree("raw").expect("tree");
        let line = serde_json::to_vec(&format!("{:0>600}", 0)).expect("json");
        let sled_row = run(
            threads,
            secs,
            Arc::new(move |i: u64| {
                tree.insert(i.to_be_bytes(), line.as_slice())
                    .expect("insert");
                db.flush().expect("flush");
            }),
        );
        println!(
            "{:>9} | {:>12.0} {:>8} {:>8} | {:>12.0} {:>8} {:>8} | {:>9.2}x",
            threads,
            audit.rate(),
            ms(audit.p50),
            ms(audit.p99),
            sled_row.rate(),
            ms(sled_row.p50),
            ms(sled_row.p99),
            audit.rate() / sled_row.rate()
        );

        // Open = full verification of what was just written.
        let t0 = Instant::now();
        let reopened = AuditLog::open(dir.path(), Config::default()).expect("reopen");
        let open_time = t0.elapsed();
        assert_eq!(reopened.len(), records);
        println!(
            "{:>9}   reopen + verify of {records} records: {} ms",
            "",
            ms(open_time)
        );
        if threads == 1 {
            one = Some(audit.rate());
        }
        if threads == 64 {
            sixty_four = Some(audit);
        }
    }
    if let (Some(one), Some(s)) = (one, sixty_four) {
        let scale = s.rate() / one;
        println!(
            "group commit: 64 appenders = {scale:.1}x one appender (target >= 10x: {}); \
             p99 at 64 = {} ms (target < 5 ms: {})",
            if scale >= 10.0 { "met" } else { "NOT met" },
            ms(s.p99),
            if s.p99 < Duration::from_millis(5) {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}
