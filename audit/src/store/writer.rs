//! The writer thread: the one owner of the chain head. It batches queued appends, writes
//! them under one flush, answers each caller, and signs checkpoints and shreds expired keys
//! between batches (see the [`super`] module docs).

use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sled::Transactional;

use super::{Config, ContentMode, Job, Receipt, Shared};
use crate::codec;
use crate::error::{Error, Result};
use crate::layout::{seq_key, write_latest_checkpoint};
use crate::merkle::{self, Frontier};
use crate::note::{self, Checkpoint, Signer};
use crate::pending::Reply;
use crate::record::{Actor, Digest, Event, GENESIS_PREV, Kind, Record, chain_hash};
use crate::sealing::{self, DataKeys};

/// Changes to the keys tree that must land atomically with a batch of records.
#[derive(Default)]
struct KeyChanges {
    put: Vec<(Vec<u8>, Vec<u8>)>,
    del: Vec<Vec<u8>>,
}

impl KeyChanges {
    fn is_empty(&self) -> bool {
        self.put.is_empty() && self.del.is_empty()
    }
}

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: Receiver<Job>,
    pub(super) config: Config,
    pub(super) next_seq: u64,
    pub(super) head: Digest,
    pub(super) frontier: Frontier,
    pub(super) signer: Signer,
    pub(super) last_cp_size: Option<u64>,
    /// Records appended since the last checkpoint record (not counting it).
    pub(super) events_since_cp: u64,
    pub(super) last_cp_time: Instant,
    pub(super) data_keys: DataKeys,
    pub(super) last_retention_epoch: Option<u64>,
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Writer {
    pub(super) fn run(mut self) {
        loop {
            let job = match self.config.checkpoint_interval {
                Some(t) => {
                    let wait = t.saturating_sub(self.last_cp_time.elapsed());
                    match self.rx.recv_timeout(wait.max(Duration::from_millis(1))) {
                        Ok(job) => Some(job),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return self.shutdown(None),
                    }
                }
                None => match self.rx.recv() {
                    Ok(job) => Some(job),
                    Err(_) => return self.shutdown(None),
                },
            };
            let mut appends = Vec::new();
            let mut next = job;
            while let Some(job) = next.take() {
                match job {
                    Job::Append(event, reply) => {
                        appends.push((event, reply));
                        if appends.len() < self.config.max_batch {
                            next = self.rx.try_recv().ok();
                        }
                    }
                    Job::Erase(subject, actor, reply) => {
                        self.commit(std::mem::take(&mut appends));
                        reply.send(self.erase(Some(&subject), actor, None));
                    }
                    Job::Checkpoint(reply) => {
                        self.commit(std::mem::take(&mut appends));
                        let r = self.checkpoint().map(|()| self.shared.latest_checkpoint());
                        reply.send(r);
                    }
                    Job::Close(reply) => {
                        self.commit(std::mem::take(&mut appends));
                        return self.shutdown(Some(reply));
                    }
                }
            }
            self.commit(appends);
            self.housekeeping();
        }
    }

    /// Time-based checkpoints and retention, checked after every batch and on timeouts.
    fn housekeeping(&mut self) {
        let count_due = self.config.checkpoint_every > 0
            && self.events_since_cp >= self.config.checkpoint_every;
        let time_due = self
            .config
            .checkpoint_interval
            .is_some_and(|t| self.last_cp_time.elapsed() >= t);
        if (count_due || time_due) && self.events_since_cp > 0 {
            // A failure poisons the log; callers see it on their next append.
            let _ = self.checkpoint();
        }
        if time_due {
            self.last_cp_time = Instant::now();
        }
        if let Some(retention) = self.config.retention {
            let epoch = sealing::epoch_of(unix_now(), self.config.epoch_length);
            if self.last_retention_epoch != Some(epoch) {
                let keep = sealing::epochs_covering(retention, self.config.epoch_length);
                let before = epoch.saturating_sub(keep);
                if self.erase(None, None, Some(before)).is_ok() {
                    self.last_retention_epoch = Some(epoch);
                }
            }
        }
    }

    fn shutdown(mut self, reply: Option<Reply<()>>) {
        let result = if self.shared.poison_cause().is_some() {
            Ok(())
        } else {
            self.checkpoint()
        };
        if let Some(reply) = reply {
            reply.send(result);
        }
    }

    fn poison(&self, cause: &str) {
        *self
            .shared
            .poisoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cause.to_string());
    }

    /// Writes `records` (already chained from the current head) and `keys` in one atomic
    /// sled batch or transaction, flushes once, and only then advances the head. On failure
    /// the log is poisoned and the head stays where the disk is known to be.
    fn write(&mut self, records: &[Record], keys: KeyChanges) -> Result<()> {
        if let Some(cause) = self.shared.poison_cause() {
            return Err(Error::Poisoned { cause });
        }
        let lines: Vec<([u8; 8], Vec<u8>)> = records
            .iter()
            .map(|r| (seq_key(r.seq), r.to_json()))
            .collect();
        let applied = if keys.is_empty() {
            let mut batch = sled::Batch::default();
            for (k, v) in &lines {
                batch.insert(k, v.as_slice());
            }
            self.shared
                .records
                .apply_batch(batch)
                .map_err(|e| e.to_string())
        } else {
            (&self.shared.records, &self.shared.keys)
                .transaction(|(r, k)| {
                    for (key, v) in &lines {
                        r.insert(key, v.as_slice())?;
                    }
                    for (key, v) in &keys.put {
                        k.insert(key.as_slice(), v.as_slice())?;
                    }
                    for key in &keys.del {
                        k.remove(key.as_slice())?;
                    }
                    Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
                })
                .map_err(|e| format!("{e:?}"))
        };
        let flushed = applied.and_then(|()| {
            self.shared
                .db
                .flush()
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        if let Err(cause) = flushed {
            self.poison(&cause);
            return Err(Error::Storage(cause));
        }
        for r in records {
            // INVARIANT: the frontier cannot overflow before seq does.
            let _ = self.frontier.push(merkle::leaf_hash(r.hash.as_bytes()));
            self.head = r.hash;
            self.next_seq = r.seq + 1;
        }
        self.shared
            .durable_len
            .store(self.next_seq, Ordering::Release);
        Ok(())
    }

    /// Writes `appends` as one batch under one flush and answers each caller.
    fn commit(&mut self, appends: Vec<(Box<Event>, Reply<Receipt>)>) {
        if appends.is_empty() {
            return;
        }
        if let Some(cause) = self.shared.poison_cause() {
            for (_, reply) in appends {
                reply.send(Err(Error::Poisoned {
                    cause: cause.clone(),
                }));
            }
            return;
        }
        let mut keys = KeyChanges::default();
        let mut records = Vec::with_capacity(appends.len());
        let mut replies = Vec::with_capacity(appends.len());
        let mut prev = self.head;
        for (event, reply) in appends {
            let seq = self.next_seq + records.len() as u64;
            match self.build(&event, seq, prev, &mut keys) {
                Ok(record) => {
                    prev = record.hash;
                    records.push(record);
                    replies.push(reply);
                }
                // Sealing failed (RNG, master key): refuse this event only.
                Err(e) => reply.send(Err(e)),
            }
        }
        match self.write(&records, keys) {
            Ok(()) => {
                self.events_since_cp += records.len() as u64;
                for (reply, r) in replies.into_iter().zip(&records) {
                    reply.send(Ok(Receipt {
                        seq: r.seq,
                        hash: r.hash,
                    }));
                }
            }
            Err(e) => {
                self.data_keys.clear();
                let cause = e.to_string();
                for reply in replies {
                    reply.send(Err(Error::Storage(cause.clone())));
                }
            }
        }
    }

    /// A record for `event` at `seq` after `prev`, sealing its content in sealed mode.
    fn build(
        &mut self,
        event: &Event,
        seq: u64,
        prev: Digest,
        keys: &mut KeyChanges,
    ) -> Result<Record> {
        let mut record = Record {
            seq,
            time: codec::now_rfc3339(),
            kind: event.kind,
            actor: event.actor.clone(),
            peer: event.peer.clone(),
            request_id: event.request_id.clone(),
            model: event.model.clone(),
            prompt_sha256: event.prompt.as_deref().map(Digest::of),
            output_sha256: event.output.as_deref().map(Digest::of),
            tokens: event.tokens,
            status: event.status.clone(),
            duration_ms: event.duration_ms,
            subject: event.subject.clone(),
            sealed: None,
            params: event.params.clone(),
            prev,
            hash: GENESIS_PREV,
        };
        let has_content = event.prompt.is_some() || event.output.is_some();
        if self.config.content == ContentMode::Sealed && has_content {
            let master = self
                .shared
                .master
                .as_ref()
                .ok_or_else(|| Error::Config("sealed mode without a master key".into()))?;
            let subject = sealing::key_subject(event);
            let epoch = sealing::epoch_of(unix_now(), self.config.epoch_length);
            let key = self.data_keys.get_or_create(
                &self.shared.keys,
                master,
                &subject,
                epoch,
                &mut keys.put,
            )?;
            record.sealed = Some(sealing::seal_content(
                key,
                &subject,
                epoch,
                seq,
                event.prompt.as_deref(),
                event.output.as_deref(),
            )?);
        }
        record.hash = chain_hash(&prev, &record.canonical_bytes());
        Ok(record)
    }

    /// Deletes data keys (one subject's, or every key of an epoch before `before_epoch`) and
    /// appends the `audit.erase` record in the same transaction.
    fn erase(
        &mut self,
        subject: Option<&str>,
        actor: Option<Actor>,
        before_epoch: Option<u64>,
    ) -> Result<Receipt> {
        let doomed = sealing::doomed_keys(&self.shared.keys, subject, before_epoch)?;
        if subject.is_none() && doomed.is_empty() {
            // Retention with nothing to shred: no record.
            return Ok(Receipt {
                seq: self.next_seq,
                hash: self.head,
            });
        }
        let mut event = Event::new(Kind::AuditErase).param("keys", doomed.len().to_string());
        event.actor = actor;
        match (subject, before_epoch) {
            (Some(s), _) => event.subject = Some(s.to_string()),
            (None, Some(e)) => {
                event = event
                    .param("reason", "retention")
                    .param("before_epoch", e.to_string());
            }
            (None, None) => {}
        }
        let mut keys = KeyChanges::default();
        let record = self.build(&event, self.next_seq, self.head, &mut keys)?;
        keys.del = doomed.iter().map(|(k, _, _)| k.clone()).collect();
        self.write(std::slice::from_ref(&record), keys)?;
        for (_, s, e) in &doomed {
            self.data_keys.forget(s, *e);
        }
        self.events_since_cp += 1;
        Ok(Receipt {
            seq: record.seq,
            hash: record.hash,
        })
    }

    /// Signs a checkpoint over every flushed record and appends it (see the module docs).
    fn checkpoint(&mut self) -> Result<()> {
        if self.events_since_cp == 0 {
            return Ok(());
        }
        let size = self.next_seq;
        if self.last_cp_size.is_some_and(|last| last >= size) {
            return Ok(());
        }
        let body = Checkpoint::new(&self.shared.origin, size, self.frontier.root())
            .map_err(|e| Error::Config(e.to_string()))?;
        let note = note::sign_checkpoint(&body, &self.signer);
        let event = Event::new(Kind::AuditCheckpoint).param("note", note.clone());
        let record = self.build(&event, size, self.head, &mut KeyChanges::default())?;
        self.write(std::slice::from_ref(&record), KeyChanges::default())?;
        self.last_cp_size = Some(size);
        self.events_since_cp = 0;
        self.last_cp_time = Instant::now();
        *self
            .shared
            .latest_checkpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(note.clone());
        // The record is durable; the file is a convenience copy (rewritten on open).
        write_latest_checkpoint(&self.shared.dir, &note).map_err(|e| Error::Storage(e.to_string()))
    }
}
