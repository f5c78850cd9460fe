//! SocketDeadlines for socket waits without a timer per wait.
//!
//! A monoio timer is a cache-padded entry of several hundred bytes inside the waiting future,
//! plus wheel work on every request. Waits that end a connection when they expire (client
//! keep-alive idle, slow heads, an upstream's response head, an idle tunnel) only need
//! deadlines as precise as the worker's housekeeping tick, so a wait registers its socket here
//! and the tick shuts down the read side (for tunnels both sides) of sockets whose deadline
//! passed: the pending read then completes with EOF, and the waiter sees that its deadline
//! expired. This keeps idle connections' futures small and the request path, and every message
//! through a tunnel, free of timers.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use slab::Slab;

struct Entry {
    fd: RawFd,
    /// `None`: registered but not armed (see [`SocketDeadlines::register_unarmed`]).
    deadline: Option<Instant>,
    expired: bool,
    /// For a connection waiting for a request (its first or its next), since when: such
    /// waits end early when the worker drains, and the oldest when a new client needs room.
    idle_since: Option<Instant>,
    /// What expiry shuts down: the read side (`SHUT_RD`), or both (`SHUT_RDWR`, which also
    /// fails a write stalled on a peer that stopped reading).
    how: libc::c_int,
    /// For a wait on a peer that is still taking bytes we sent: the unacknowledged bytes in
    /// the socket's send queue at the last look, and the limit to start again with while that
    /// keeps shrinking ([`Deadline::watch_queue`]).
    queue: Option<(u32, Duration)>,
    /// The client a wait for an upstream serves: if it goes away, the wait ends early.
    client: Option<RawFd>,
    client_gone: bool,
}

/// The housekeeping tick that sweeps deadlines (see `server::worker`).
pub const TICK: Duration = Duration::from_millis(100);

pub struct SocketDeadlines {
    entries: RefCell<Slab<Entry>>,
    /// Updated every tick; deadlines are as precise as the tick.
    now: Cell<Instant>,
}

impl Default for SocketDeadlines {
    fn default() -> Self {
        SocketDeadlines {
            entries: RefCell::new(Slab::new()),
            now: Cell::new(Instant::now()),
        }
    }
}

impl SocketDeadlines {
    /// Watches `fd` until the guard drops; the deadline counts from the last tick, so it may
    /// fire up to one tick early (fine for idle limits of seconds). The fd must stay open while
    /// the guard lives.
    pub fn register(&self, fd: RawFd, timeout: Duration) -> Deadline<'_> {
        self.insert(fd, Some(self.now.get() + timeout), None, libc::SHUT_RD)
    }

    /// Watches `fd` without a deadline until [`Deadline::arm`] gives it one: for a wait whose
    /// limit starts later than the wait itself (an upstream's answer to a request whose body
    /// is still being sent).
    pub fn register_unarmed(&self, fd: RawFd) -> Deadline<'_> {
        self.insert(fd, None, None, libc::SHUT_RD)
    }

    /// Like [`register`](Self::register) for a connection waiting, idle, for a request (its
    /// first or its next): [`expire_idle`](Self::expire_idle) ends such waits at once, and
    /// [`evict_idle`](Self::evict_idle) the oldest.
    pub fn register_idle(&self, fd: RawFd, timeout: Duration) -> Deadline<'_> {
        let now = self.now.get();
        self.insert(fd, Some(now + timeout), Some(now), libc::SHUT_RD)
    }

    /// Ends the wait of the connection idle the longest, if any: at the connection limit an
    /// idle connection (kept alive after a request, or one that has sent nothing yet) makes
    /// room for a new client, as nginx reuses its idle connections, instead of new clients
    /// getting 503s until `keepalive_timeout` or `header_timeout` (which clients opening
    /// connections and sending nothing could hold off for good). Whether one was found.
    pub fn evict_idle(&self) -> bool {
        let mut entries = self.entries.borrow_mut();
        let oldest = entries
            .iter_mut()
            .filter(|(_, e)| e.idle_since.is_some() && !e.expired)
            .min_by_key(|(_, e)| e.idle_since);
        match oldest {
            Some((_, e)) => {
                expire(e);
                true
            }
            None => false,
        }
    }

    /// Like [`register`](Self::register) but never early: the deadline counts from the last
    /// tick plus one tick, so it fires between `timeout` and `timeout` + two ticks from now,
    /// without reading the clock on the request path.
    pub fn register_exact(&self, fd: RawFd, timeout: Duration) -> Deadline<'_> {
        self.insert(fd, Some(self.exact(timeout)), None, libc::SHUT_RD)
    }

    /// `timeout` from now, never early (see [`register_exact`](Self::register_exact)).
    fn exact(&self, timeout: Duration) -> Instant {
        self.now.get() + timeout + TICK
    }

    /// Like [`register_exact`](Self::register_exact), but expiry shuts the socket down both
    /// ways, which also fails a pending write: for a tunnel, whose idle limit ends reads and
    /// writes alike, and for a write's progress limit. Re-[`arm`]ed on every byte moved, so it
    /// counts from the last progress.
    ///
    /// [`arm`]: Deadline::arm
    pub fn register_closing(&self, fd: RawFd, timeout: Duration) -> Deadline<'_> {
        self.insert(fd, Some(self.exact(timeout)), None, libc::SHUT_RDWR)
    }

    fn insert(
        &self,
        fd: RawFd,
        deadline: Option<Instant>,
        idle_since: Option<Instant>,
        how: libc::c_int,
    ) -> Deadline<'_> {
        let key = self.entries.borrow_mut().insert(Entry {
            fd,
            deadline,
            expired: false,
            idle_since,
            how,
            queue: None,
            client: None,
            client_gone: false,
        });
        Deadline { owner: self, key }
    }

    /// Ends every idle wait now (the worker is draining: idle keep-alive connections close).
    pub fn expire_idle(&self) {
        self.expire_where(|e| e.idle_since.is_some());
    }

    /// Ends every wait now (a drain's time is up): a request waiting for its answer gets its
    /// 504, a tunnel closes both ways, each through its usual path and access-log line.
    pub fn expire_all(&self) {
        self.expire_where(|_| true);
    }

    fn expire_where(&self, pick: impl Fn(&Entry) -> bool) {
        for (_, e) in self.entries.borrow_mut().iter_mut() {
            if !e.expired && pick(e) {
                expire(e);
            }
        }
    }

    /// Expires overdue waits: their sockets' read side is shut down, which ends the wait. Waits
    /// for an upstream whose client went away end too ([`Deadline::watch_client`]).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.now.set(now);
        for (_, e) in self.entries.borrow_mut().iter_mut() {
            if e.expired {
                continue;
            }
            if took_bytes(e) {
                e.deadline = e.queue.map(|(_, limit)| now + limit);
            }
            if e.deadline.is_some_and(|d| d <= now) {
                expire(e);
            } else if let Some(fd) = e.client {
                match peek(fd) {
                    Peer::Gone => {
                        e.client_gone = true;
                        expire(e);
                    }
                    // A pipelined request: the client is there, and stays readable.
                    Peer::Data => e.client = None,
                    Peer::Spurious => {}
                }
            }
        }
    }

    /// The tick clock: the time of the last sweep (at most one tick old).
    pub fn now(&self) -> Instant {
        self.now.get()
    }
}

/// A send queue not looked at yet ([`Deadline::watch_queue_from_next_sweep`]).
const UNSEEN: u32 = u32::MAX;

/// For a wait watching its send queue: whether the peer took bytes since the last sweep (the
/// queue shrank), which starts its limit again. Looked at every sweep, so the limit counts from
/// the last progress to within a tick; the first look only notes the queue.
fn took_bytes(e: &mut Entry) -> bool {
    let Some((last, limit)) = e.queue else {
        return false;
    };
    let now = unacknowledged(e.fd);
    e.queue = Some((now, limit));
    now < last && last != UNSEEN
}

/// Bytes sent on a TCP socket that its peer has not acknowledged yet (`SIOCOUTQ`): a peer
/// that keeps reading makes this shrink, one that stopped leaves it.
pub fn unacknowledged(fd: RawFd) -> u32 {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int; `fd` is an open socket.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) } != 0 {
        return 0;
    }
    n.max(0) as u32
}

/// Marks a wait expired and shuts its socket down (the read side, or both), which ends the
/// pending read (and write).
fn expire(e: &mut Entry) {
    e.expired = true;
    // SAFETY: registered fds are open until their guard drops and removes them.
    unsafe { libc::shutdown(e.fd, e.how) };
}

/// A registered wait; dropping it deregisters.
pub struct Deadline<'a> {
    owner: &'a SocketDeadlines,
    key: usize,
}

impl Deadline<'_> {
    pub fn expired(&self) -> bool {
        self.owner.entries.borrow()[self.key].expired
    }

    /// Sets the deadline to `timeout` from now, never early (like `register_exact`).
    pub fn arm(&self, timeout: Duration) {
        let at = self.owner.exact(timeout);
        self.owner.entries.borrow_mut()[self.key].deadline = Some(at);
    }

    /// Ends the wait early, at the next sweep, if `client` (whose request it serves) closes or
    /// resets: a client that gave up while the upstream prepares its answer releases the
    /// upstream connection (an SSE subscription, a WebSocket handshake, a slow query) within a
    /// tick, as nginx does, instead of when the answer or the timeout comes. Waits that end
    /// within a tick, nearly all, cost no look at the client; a longer one costs one
    /// `recv(MSG_PEEK)` per tick. As in nginx, a client that half-closes counts as gone.
    pub fn watch_client(&self, client: RawFd) {
        self.owner.entries.borrow_mut()[self.key].client = Some(client);
    }

    /// Lets the wait run past its deadline while the peer keeps taking what was sent to it
    /// (the unacknowledged bytes in the socket's send queue shrink): each sweep that finds them
    /// fewer starts `limit` again. An upstream still reading a request body ringway has handed
    /// to the kernel is busy, not late, and a client reading a response slowly is not stalled.
    /// One `SIOCOUTQ` now and one per sweep while the wait lasts.
    pub fn watch_queue(&self, limit: Duration) {
        let mut entries = self.owner.entries.borrow_mut();
        let e = &mut entries[self.key];
        e.queue = Some((unacknowledged(e.fd), limit));
    }

    /// [`watch_queue`](Self::watch_queue) without a first look: the first sweep that finds
    /// the wait still there takes it (at most a tick late). For waits where a look would cost
    /// a syscall on every request (writes), nearly all of which end before any sweep.
    pub fn watch_queue_from_next_sweep(&self, limit: Duration) {
        self.owner.entries.borrow_mut()[self.key].queue = Some((UNSEEN, limit));
    }

    /// Whether the wait ended because its client went away.
    pub fn client_gone(&self) -> bool {
        self.owner.entries.borrow()[self.key].client_gone
    }

    /// Removes the deadline; the wait is watched but no longer limited.
    pub fn disarm(&self) {
        self.owner.entries.borrow_mut()[self.key].deadline = None;
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        self.owner.entries.borrow_mut().remove(self.key);
    }
}

/// What a look at a client's socket found.
pub enum Peer {
    Gone,
    Data,
    Spurious,
}

/// Looks at a client socket without consuming: EOF or reset (gone) vs. pipelined bytes.
pub fn peek(fd: RawFd) -> Peer {
    let mut byte = 0u8;
    // SAFETY: a valid 1-byte buffer; MSG_PEEK leaves the socket's data in place.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Peer::Gone,
        n if n > 0 => Peer::Data,
        _ => match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Peer::Spurious,
            _ => Peer::Gone,
        },
    }
}
