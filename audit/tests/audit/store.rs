use std::sync::Arc;

use audit::{AuditLog, Error, Event, Kind, Options, verify_state};

use crate::common::{event, fill, key, open, test_config, verify};

#[test]
fn appends_are_dense_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let r0 = log.append(event(Kind::ServiceStart, 0)).expect("append");
    let r1 = log
        .append(event(Kind::InferenceRequest, 1))
        .expect("append");
    assert_eq!((r0.seq(), r1.seq()), (0, 1));
    assert_eq!(log.record(1).expect("record").prev, r0.hash());
    log.close().expect("close");
    drop(log);

    let log = open(dir.path());
    assert_eq!(log.len(), 3);
    // close() signed a checkpoint of size 2, appended as record 2.
    let cp = log.record(2).expect("checkpoint record");
    assert_eq!(cp.kind, Kind::AuditCheckpoint);
    assert_eq!(cp.prev, r1.hash());
    let r2 = log.append(event(Kind::ServiceStop, 2)).expect("append");
    assert_eq!(r2.seq(), 3);
    assert_eq!(log.record(3).expect("record").prev, cp.hash);
    log.close().expect("close");
    drop(log); // releases sled's lock
    let report = verify_state(dir.path(), &key(dir.path()), &Options::default()).expect("verify");
    // 3 events and the checkpoint that each close() signed after new records.
    assert_eq!(report.records, 5);
    assert_eq!(report.last_checkpoint, Some(4));
}

#[test]
fn concurrent_appenders_get_distinct_seqs_and_the_chain_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(dir.path()));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        log.append(event(Kind::InferenceRequest, t * 100 + i))
                            .expect("append")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut receipts: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("join"))
        .collect();
    receipts.sort_by_key(|r| r.seq());
    assert_eq!(receipts.len(), 400);
    receipts.dedup_by_key(|r| r.seq());
    assert_eq!(receipts.len(), 400, "duplicate seqs");
    for r in &receipts {
        assert_eq!(log.record(r.seq()).expect("record").hash, r.hash());
    }
    log.close().expect("close");
    let mut out = Vec::new();
    log.export(&mut out, None, None).expect("export");
    let report = verify(&out, &key(dir.path())).expect("verify");
    // 400 events plus checkpoints (every 4 events, signed by the writer in between).
    let checkpoints = report.records - 400;
    assert!((1..=100).contains(&checkpoints), "{report}");
    assert_eq!(report.last_checkpoint, Some(report.records - 1), "{report}");
}

#[test]
fn reserved_kinds_and_oversized_fields_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    for kind in [Kind::AuditCheckpoint, Kind::AuditErase] {
        let err = log.append(Event::new(kind)).expect_err("reserved");
        assert!(matches!(err, Error::InvalidEvent(_)), "{err}");
    }
    let huge =
        Event::new(Kind::InferenceRequest).prompt(vec![b'x'; audit::record::MAX_FIELD_LEN + 1]);
    assert!(matches!(log.append(huge), Err(Error::InvalidEvent(_))));
    assert_eq!(log.len(), 0, "refused events take no seq");
}

#[test]
fn appends_after_close_fail_with_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    fill(&log, 3);
    log.close().expect("close");
    assert!(matches!(
        log.append(event(Kind::ServiceStop, 9)),
        Err(Error::Closed)
    ));
    assert!(!log.is_writable());
}

#[test]
fn a_second_process_cannot_open_the_same_store() {
    // sled locks the database file; a second open in this process also fails because the
    // lock is per open file description.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let second = AuditLog::open(dir.path(), test_config());
    let err = second.expect_err("second open");
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    // The read-only and existing-only opens say the same, and create nothing.
    assert!(matches!(
        AuditLog::open_read_only(dir.path()),
        Err(Error::Locked { .. })
    ));
    drop(log);
    let empty = tempfile::tempdir().expect("tempdir");
    let missing = empty.path().join("none");
    for result in [
        AuditLog::open_read_only(&missing),
        AuditLog::open_existing(&missing, test_config()),
        AuditLog::open_read_only(empty.path()),
    ] {
        assert!(matches!(result, Err(Error::NoLog { .. })), "{result:?}");
    }
    assert!(!missing.exists());
    assert_eq!(std::fs::read_dir(empty.path()).expect("ls").count(), 0);
}

#[test]
fn submit_is_a_future() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let pending = log.submit(event(Kind::InferenceRequest, 0));
    // A minimal executor: poll with a thread-parking waker.
    let receipt = block_on(pending).expect("append");
    assert_eq!(receipt.seq(), 0);
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn partial_export_verifies_from_its_first_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    fill(&log, 20);
    let mut out = Vec::new();
    let summary = log.export(&mut out, Some(5), Some(9)).expect("export");
    assert_eq!(summary.records, 5);
    let report = verify(&out, &key(dir.path())).expect("verify");
    assert_eq!((report.first_seq, report.records), (5, 5));
    assert_eq!(report.head, Some(log.record(9).expect("record").hash));
}
