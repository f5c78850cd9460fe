//! The wrapper every connection task runs in: panics contained, and cut off when a drain's
//! time is up.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// The worker's connection tasks, so a drain whose time is up can end them: first by shutting
/// their client sockets down (they end through their usual paths, with their access-log
/// lines), then by dropping what still runs. monoio leaves tasks still pending when its
/// runtime ends undropped, and an undropped task never closes its sockets until exit.
#[derive(Default)]
pub struct Tasks {
    cut: Cell<bool>,
    /// Each live task's waker and client socket.
    wakers: RefCell<Slab<(Waker, RawFd)>>,
    /// Registered tasks not yet dropped (the cut empties `wakers`, not this).
    live: Cell<usize>,
}

impl Tasks {
    /// Shuts every task's client socket down both ways: what the task waits for, or writes
    /// next, fails, and it ends through its usual path (and access-log line).
    pub fn shut_down_clients(&self) {
        for (_, (_, fd)) in self.wakers.borrow().iter() {
            // SAFETY: a registered task owns its open client socket until it deregisters.
            unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
        }
    }

    /// Ends every task at its next poll, and wakes them all for it. A task ended this way is
    /// dropped where it stood: its sockets close, but a request in it gets no log line.
    pub fn cut(&self) {
        self.cut.set(true);
        let wakers: Vec<(Waker, RawFd)> = self.wakers.borrow_mut().drain().collect();
        wakers.into_iter().for_each(|(w, _)| w.wake());
    }

    /// Tasks started and not yet dropped.
    pub fn live(&self) -> usize {
        self.live.get()
    }
}

/// A connection's task with its panics contained: a bug hit by one request drops that
/// connection (its state unwinds: sockets close, counters are restored) and is logged, instead
/// of unwinding through the worker's runtime and taking every connection on the core with it.
/// Registered in [`Tasks`] from its first poll (once per connection, nothing per request).
pub struct Isolated<F> {
    fut: Option<F>,
    tasks: Rc<Tasks>,
    key: Option<usize>,
    client: RawFd,
}

impl<F> Isolated<F> {
    /// `client`: the connection's socket, owned by `fut`.
    pub fn new(fut: F, tasks: Rc<Tasks>, client: RawFd) -> Isolated<F> {
        Isolated {
            fut: Some(fut),
            tasks,
            key: None,
            client,
        }
    }
}

impl<F: Future<Output = ()>> Future for Isolated<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: `fut` is pinned structurally and only ever dropped in place (set to `None`),
        // never moved; the other fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        if this.tasks.cut.get() {
            this.fut = None;
            return Poll::Ready(());
        }
        if this.key.is_none() {
            // A monoio task's waker is the same for all its polls: registered once.
            let entry = (cx.waker().clone(), this.client);
            this.key = Some(this.tasks.wakers.borrow_mut().insert(entry));
            this.tasks.live.set(this.tasks.live.get() + 1);
        }
        let Some(fut) = this.fut.as_mut() else {
            return Poll::Ready(());
        };
        // SAFETY: see above; `fut` stays where it is until dropped in place.
        let fut = unsafe { Pin::new_unchecked(fut) };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                this.fut = None;
                Poll::Ready(())
            }
            Err(_) => {
                tracing::error!("a connection task panicked (a bug); that connection was dropped");
                this.fut = None;
                Poll::Ready(())
            }
        }
    }
}

impl<F> Drop for Isolated<F> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Gone already when the cut took every waker.
            self.tasks.wakers.borrow_mut().try_remove(key);
            self.tasks.live.set(self.tasks.live.get() - 1);
        }
    }
}
