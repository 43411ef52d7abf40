//! Durability under SIGKILL and under failing writes.
//!
//! The child side of each test is an `#[ignore]`d test of this same binary, started with
//! `--ignored --exact` and an environment variable naming its state directory, so no extra
//! binary is needed. The child prints `ack <seq> <hash>` for every acknowledged append.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::{AuditLog, Config, Error, Kind, Options, verify_state};
use rand::Rng;

use crate::common::event;

const CHILD_DIR_ENV: &str = "AUDIT_TEST_CHILD_DIR";

fn child_config() -> Config {
    Config {
        checkpoint_every: 40,
        checkpoint_interval: Some(Duration::from_millis(50)),
        ..Config::default()
    }
}

fn spawn_child(test: &str, dir: &Path, fsize_kib: Option<u64>) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    let args = [
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ];
    let mut cmd = match fsize_kib {
        None => {
            let mut c = Command::new(exe);
            c.args(args);
            c
        }
        Some(kib) => {
            // RLIMIT_FSIZE makes writes past the limit fail with EFBIG, as a full disk
            // fails them with ENOSPC; SIGXFSZ is ignored so the write returns an error.
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
                .arg(exe)
                .args(args);
            c
        }
    };
    cmd.env(CHILD_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// Parses `ack <seq> <hash>` lines.
fn acks(lines: &[String]) -> BTreeMap<u64, String> {
    lines
        .iter()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("ack ")?.split(' ');
            let seq = parts.next()?.parse().ok()?;
            Some((seq, parts.next()?.to_string()))
        })
        .collect()
}

fn assert_acks_present(dir: &Path, acked: &BTreeMap<u64, String>) -> AuditLog {
    let log = AuditLog::open(dir, child_config()).expect("reopen after crash");
    for (seq, hash) in acked {
        let record = log
            .record(*seq)
            .unwrap_or_else(|e| panic!("acknowledged seq {seq} lost: {e}"));
        assert_eq!(
            &record.hash.to_hex(),
            hash,
            "acknowledged seq {seq} changed"
        );
    }
    log
}

#[test]
#[ignore = "child process of crash::sigkill_loses_no_acknowledged_record"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let log = Arc::new(AuditLog::open(&dir, child_config()).expect("child open"));
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let (log, out) = (log.clone(), out.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    match log.append(event(Kind::InferenceRequest, t * 1_000_000 + i)) {
                        Ok(r) => {
                            let mut o = out.lock().expect("stdout");
                            let _ = writeln!(o, "ack {} {}", r.seq(), r.hash());
                            let _ = o.flush();
                        }
                        Err(e) => {
                            let _ = writeln!(out.lock().expect("stdout"), "err {e}");
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

#[test]
fn sigkill_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand::thread_rng();
    let mut all_acked = BTreeMap::new();
    let rounds = 20;
    for round in 0..rounds {
        let mut child = spawn_child("crash::crash_child", dir.path(), None);
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the first acknowledgement, then kill at a random moment.
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !lines.iter().any(|l: &String| l.starts_with("ack ")) {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => lines.push(l),
                Err(_) if Instant::now() > deadline => panic!("child never acknowledged"),
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..150)));
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        reader.join().expect("reader");
        lines.extend(rx.try_iter());
        assert!(
            !lines.iter().any(|l| l.starts_with("err ")),
            "round {round}: child saw an error: {lines:?}"
        );
        let acked = acks(&lines);
        let log = assert_acks_present(dir.path(), &acked);
        all_acked.extend(acked);
        // Every acknowledgement from earlier rounds is still there, too.
        for (seq, hash) in &all_acked {
            assert_eq!(&log.record(*seq).expect("record").hash.to_hex(), hash);
        }
        // Appends continue where the durable chain ends. The writer may sign a timed
        // checkpoint (every 50 ms here) between `len()` and the append; that record is
        // then the only one allowed in between.
        let len = log.len();
        let r = log
            .append(event(Kind::ServiceStart, round))
            .expect("append after crash");
        for seq in len..r.seq() {
            let between = log.record(seq).expect("record between");
            assert_eq!(
                between.kind,
                Kind::AuditCheckpoint,
                "round {round}: seq {seq} between len() = {len} and the append {}",
                r.seq()
            );
        }
        assert!(
            r.seq() <= len + 1,
            "round {round}: append at {} after len {len}",
            r.seq()
        );
        drop(log);
    }
    let report = verify_state(
        dir.path(),
        &crate::common::key(dir.path()),
        &Options::default(),
    )
    .expect("chain verifies after crashes");
    eprintln!(
        "{rounds} SIGKILL rounds, {} acknowledged appends: {report}",
        all_acked.len()
    );
    assert!(report.records as usize > all_acked.len(), "{report}");
    assert!(
        all_acked.len() > rounds as usize,
        "too few acknowledgements: {}",
        all_acked.len()
    );
}

#[test]
#[ignore = "child process of crash::failing_writes_are_refused_and_nothing_half_written_survives"]
fn fsize_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let log = AuditLog::open(&dir, child_config()).expect("child open");
    let mut errors = 0;
    for i in 0..200_000u64 {
        match log.append(event(Kind::InferenceResponse, i)) {
            Ok(r) => println!("ack {} {}", r.seq(), r.hash()),
            Err(Error::Storage(e)) => {
                println!("storage-error {e}");
                errors += 1;
            }
            Err(Error::Poisoned { .. }) => {
                println!("poisoned");
                errors += 1;
            }
            Err(e) => println!("other-error {e}"),
        }
        if errors >= 3 {
            break;
        }
    }
    println!("writable {}", log.is_writable());
}

#[test]
fn failing_writes_are_refused_and_nothing_half_written_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = AuditLog::open(dir.path(), child_config()).expect("open");
        crate::common::fill(&log, 10);
    }
    let biggest = std::fs::read_dir(dir.path().join("db"))
        .expect("db dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    // Room for a little more than what exists: appends succeed, then writes fail.
    let limit_kib = biggest / 1024 + 1024;
    let child = spawn_child("crash::fsize_child", dir.path(), Some(limit_kib));
    let output = child.wait_with_output().expect("child output");
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let acked = acks(&lines);
    let first_err = lines
        .iter()
        .position(|l| l.starts_with("storage-error "))
        .unwrap_or_else(|| {
            panic!(
                "writes never failed (limit {limit_kib} KiB): {:?}",
                lines.last()
            )
        });
    assert!(!acked.is_empty(), "no append succeeded before the limit");
    eprintln!(
        "file size limit {limit_kib} KiB: {} appends acknowledged, then {:?}",
        acked.len(),
        lines[first_err]
    );
    // After the first failure the log refuses everything: no ack after it.
    assert!(
        lines[first_err..].iter().all(|l| !l.starts_with("ack ")),
        "an append was acknowledged after a failed flush"
    );
    assert!(
        lines[first_err + 1..].iter().any(|l| l == "poisoned"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "writable false"), "{lines:?}");
    assert!(
        output.status.success(),
        "child exited with {:?}",
        output.status
    );

    // Reopened without the limit: every acknowledged record is there, the chain verifies
    // (so nothing torn was accepted) and appends continue.
    let log = assert_acks_present(dir.path(), &acked);
    let len = log.len();
    let r = log
        .append(event(Kind::ServiceStart, 0))
        .expect("append after recovery");
    assert_eq!(r.seq(), len);
    drop(log);
    verify_state(
        dir.path(),
        &crate::common::key(dir.path()),
        &Options::default(),
    )
    .expect("chain verifies");
}

#[test]
#[ignore = "child process of crash::a_read_only_state_dir_is_refused_and_left_intact"]
fn read_only_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    match AuditLog::open(&dir, child_config()) {
        Ok(log) => {
            let r = log.append(event(Kind::ServiceStart, 0));
            println!("opened; append {:?}", r.map(|r| r.seq()));
        }
        Err(Error::Storage(e)) => println!("storage-error {e}"),
        Err(e) => println!("other-error {e}"),
    }
}

/// The state directory on a read-only mount (a mount namespace of the child's own): the
/// log refuses to open with a storage error instead of running without durability, and
/// the store is unchanged afterwards. Needs root (mount namespaces), as the service tests do.
#[test]
fn a_read_only_state_dir_is_refused_and_left_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let len = {
        let log = AuditLog::open(dir.path(), child_config()).expect("open");
        crate::common::fill(&log, 10);
        log.close().expect("close");
        log.len()
    };
    let exe = std::env::current_exe().expect("current exe");
    let script = format!(
        "mount --bind '{d}' '{d}' && mount -o remount,ro,bind '{d}' && exec \"$0\" \"$@\"",
        d = dir.path().display()
    );
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(exe)
        .args([
            "--exact",
            "crash::read_only_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("mount:") && !stderr.contains("unshare:"),
        "this test needs root and mount namespaces: {stderr}"
    );
    // The harness prints `test NAME ... ` before the child's own output on one line.
    let line = stdout
        .lines()
        .find_map(|l| {
            ["storage-error ", "other-error ", "opened"]
                .iter()
                .find_map(|p| l.find(p).map(|at| &l[at..]))
        })
        .unwrap_or_else(|| panic!("child printed no result: {stdout} {stderr}"));
    assert!(
        line.starts_with("storage-error ") && line.contains("Read-only file system"),
        "{line}"
    );
    let log = AuditLog::open(dir.path(), child_config()).expect("reopen writable");
    assert_eq!(log.len(), len, "nothing was written");
    drop(log);
    verify_state(
        dir.path(),
        &crate::common::key(dir.path()),
        &Options::default(),
    )
    .expect("chain verifies");
}
