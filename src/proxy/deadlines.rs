//! Deadlines for client waits without a timer per wait.
//!
//! A monoio timer is a cache-padded entry of several hundred bytes inside the waiting future,
//! plus wheel work on every request. Client waits (keep-alive idle, slow heads) only need
//! coarse deadlines, so a connection registers its socket here while it waits and the worker's
//! housekeeping tick shuts down the read side of sockets whose deadline passed: the pending
//! read then completes with EOF, and the connection sees that its deadline expired. This keeps
//! an idle connection's future small and the request path free of timers.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use slab::Slab;

struct Entry {
    fd: RawFd,
    deadline: Instant,
    expired: bool,
}

pub struct ClientDeadlines {
    entries: RefCell<Slab<Entry>>,
    /// Updated every tick; deadlines are as precise as the tick.
    now: Cell<Instant>,
}

impl Default for ClientDeadlines {
    fn default() -> Self {
        ClientDeadlines {
            entries: RefCell::new(Slab::new()),
            now: Cell::new(Instant::now()),
        }
    }
}

impl ClientDeadlines {
    /// Watches `fd` until the guard drops. The fd must stay open while the guard lives.
    pub fn register(&self, fd: RawFd, timeout: Duration) -> Deadline<'_> {
        let deadline = self.now.get() + timeout;
        let key = self.entries.borrow_mut().insert(Entry {
            fd,
            deadline,
            expired: false,
        });
        Deadline { owner: self, key }
    }

    /// Expires overdue waits: their sockets' read side is shut down, which ends the wait.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.now.set(now);
        for (_, e) in self.entries.borrow_mut().iter_mut() {
            if !e.expired && e.deadline <= now {
                e.expired = true;
                // SAFETY: registered fds are open until their guard drops and removes them.
                unsafe { libc::shutdown(e.fd, libc::SHUT_RD) };
            }
        }
    }

    pub fn waiting(&self) -> usize {
        self.entries.borrow().len()
    }
}

/// A registered wait; dropping it deregisters.
pub struct Deadline<'a> {
    owner: &'a ClientDeadlines,
    key: usize,
}

impl Deadline<'_> {
    pub fn expired(&self) -> bool {
        self.owner.entries.borrow()[self.key].expired
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        self.owner.entries.borrow_mut().remove(self.key);
    }
}
