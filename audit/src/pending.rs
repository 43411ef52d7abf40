//! A one-shot reply slot: the writer thread fills it, the caller either blocks on it
//! ([`Pending::wait`]) or awaits it (it is a [`Future`]), so the log is usable from
//! synchronous code and from any async runtime without depending on one.
//!
//! If the writer drops a [`Reply`] without answering (it panicked), the waiter gets
//! [`Error::Closed`] instead of hanging.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};

#[derive(Debug)]
struct Slot<T> {
    value: Option<Result<T>>,
    waker: Option<Waker>,
}

#[derive(Debug)]
struct Shared<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
}

/// The waiting side.
#[derive(Debug)]
#[must_use = "an append is only durable once its Pending resolves to Ok"]
pub struct Pending<T> {
    shared: Arc<Shared<T>>,
}

/// The answering side, held by the writer thread.
#[derive(Debug)]
pub(crate) struct Reply<T> {
    shared: Option<Arc<Shared<T>>>,
}

pub(crate) fn channel<T>() -> (Reply<T>, Pending<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            value: None,
            waker: None,
        }),
        ready: Condvar::new(),
    });
    (
        Reply {
            shared: Some(shared.clone()),
        },
        Pending { shared },
    )
}

/// A pending result that is already known (e.g. the log is closed).
pub(crate) fn ready<T>(value: Result<T>) -> Pending<T> {
    let (reply, pending) = channel();
    reply.send(value);
    pending
}

impl<T> Reply<T> {
    pub(crate) fn send(mut self, value: Result<T>) {
        if let Some(shared) = self.shared.take() {
            Self::fill(&shared, value);
        }
    }

    fn fill(shared: &Shared<T>, value: Result<T>) {
        // A poisoned mutex only means another thread panicked while holding it; the slot's
        // data is still a plain Option we can overwrite.
        let mut slot = shared.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.value = Some(value);
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
        drop(slot);
        shared.ready.notify_all();
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            Self::fill(&shared, Err(Error::Closed));
        }
    }
}

impl<T> Pending<T> {
    /// Blocks until the writer answers. From async code, `.await` the `Pending` instead.
    pub fn wait(self) -> Result<T> {
        let mut slot = self
            .shared
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(v) = slot.value.take() {
                return v;
            }
            slot = self
                .shared
                .ready
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut slot = self
            .shared
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match slot.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_reply_reads_as_closed() {
        let (reply, pending) = channel::<u32>();
        drop(reply);
        assert!(matches!(pending.wait(), Err(Error::Closed)));
    }

    #[test]
    fn value_crosses_threads() {
        let (reply, pending) = channel::<u32>();
        let t = std::thread::spawn(move || reply.send(Ok(7)));
        assert_eq!(pending.wait().expect("value"), 7);
        t.join().expect("join");
    }
}
