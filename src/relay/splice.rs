//! Zero-copy relays: socket → pipe → socket with splice(2), so the bytes never enter user space.
//! [`relay`] moves a length-delimited body; [`pump`] moves one direction of a tunnel until EOF.
//! Both share the same non-blocking splice steps and readiness waits.
//!
//! Why not monoio's own tools: `monoio::io::zero_copy` copies to EOF (a body ends at its length,
//! and a pipelined message may follow), 4 KiB at a time, through a new pipe per call; its io_uring
//! splice ops are punted to io-wq kernel threads, which breaks thread-per-core. Instead this loop
//! calls splice(2) directly with SPLICE_F_NONBLOCK on the worker thread and, on EAGAIN, waits for
//! readiness through the runtime (a poll op on io_uring, the reactor on epoll).
//!
//! Bounds: never more than the remaining body is spliced from the source, so the next message
//! stays in the socket; the pipe (`pipe_size`) is the only buffer, so a slow reader on the far
//! side stops the relay from reading instead of making it buffer. A pump runs to the source's
//! EOF, so `left` is unbounded there.

use std::cell::Cell;
use std::io;
use std::os::fd::RawFd;
use std::pin::pin;
use std::time::{Duration, Instant};

use crate::net::{with_timeout, Stream};

use crate::deadlines::{peek, unacknowledged, Peer, TICK};

use super::pipes::{Pipe, PipePool};
use super::tunnel::Activity;

/// How a splice relay ended short of the full length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// The kernel refused splice before any byte moved: relay this body by copy.
    Unsupported,
    /// The source closed before the end of the body.
    SourceEof,
    SourceTimeout,
    SourceError,
    DestTimeout,
    DestError,
}

impl Fail {
    /// True when the source side (not the destination) is at fault.
    pub fn is_source(self) -> bool {
        matches!(
            self,
            Fail::SourceEof | Fail::SourceTimeout | Fail::SourceError
        )
    }
}

/// Per-wait deadlines: a read or write that makes no progress for this long fails the relay.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub read: Duration,
    pub write: Duration,
    /// While waiting for the source longer than a tick, watch the destination (a client
    /// receiving a response) and fail the relay as soon as it goes away, as the copy path does
    /// (see `relay::stream`).
    pub watch_dest: bool,
}

/// What a relay did: bytes delivered to the destination, and how it ended.
pub struct Outcome {
    pub delivered: u64,
    pub result: Result<(), Fail>,
}

/// Moves exactly `len` bytes from `src` to `dst` through a pooled pipe. `Unsupported` (nothing
/// moved) asks the caller to copy instead; the pool then stays disabled for this worker.
pub async fn relay<S: Stream, D: Stream>(
    pool: &PipePool,
    src: &S,
    dst: &D,
    len: u64,
    t: Deadlines,
) -> Outcome {
    let Some((src_fd, dst_fd, mut pipe)) = open(pool, src, dst) else {
        return unsupported();
    };
    let mut r = Relay {
        src_fd,
        dst_fd,
        left: len,
        delivered: 0,
        pipe: &mut pipe,
    };
    let result = r.run(src, dst, t).await;
    let delivered = r.delivered;
    close(pool, pipe, result == Err(Fail::Unsupported));
    Outcome { delivered, result }
}

/// How an until-EOF [`pump`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The source reached EOF and every byte before it was delivered (the caller half-closes
    /// the destination).
    Eof,
    /// A splice or readiness wait failed on either side (reset, broken pipe), or the tunnel's
    /// idle limit shut its sockets down (the caller tells which from its `Activity`).
    Error,
    /// The kernel refused splice before any byte moved: copy instead.
    Unsupported,
    /// The source went quiet with nothing in flight (the pipe is back in the pool), and the
    /// caller asked to get the direction back then (`until_quiet`).
    Quiet,
}

/// Moves bytes from `src` to `dst` until the source's EOF: one direction of a tunnel. Every
/// byte moved touches `clock`, the idle limit both directions share (its expiry shuts both
/// sockets down, which ends the waits here without a timer); bytes delivered are added to
/// `moved`.
pub async fn pump<S: Stream, D: Stream>(
    pool: &PipePool,
    src: &S,
    dst: &D,
    clock: &Activity<'_>,
    until_quiet: bool,
    moved: &Cell<u64>,
) -> PumpEnd {
    let Some((src_fd, dst_fd, mut pipe)) = open(pool, src, dst) else {
        return PumpEnd::Unsupported;
    };
    loop {
        let mut r = Relay {
            src_fd,
            dst_fd,
            // A tunnel has no length: the source's EOF ends it.
            left: u64::MAX,
            delivered: 0,
            pipe: &mut pipe,
        };
        let burst = r.pump(src, dst, clock).await;
        moved.set(moved.get() + r.delivered);
        close(pool, pipe, burst == Burst::End(PumpEnd::Unsupported));
        if let Burst::End(end) = burst {
            return end;
        }
        if until_quiet {
            return PumpEnd::Quiet;
        }
        // The source went quiet with the pipe empty: the pipe is back in the pool while this
        // direction waits, so idle tunnels hold no pipes (two fds each) and a host's fd budget
        // goes to connections.
        if src.wait_readable().await.is_err() {
            return PumpEnd::Error;
        }
        // Nothing is in flight, so if no pipe can be had the copy loop takes over losslessly.
        pipe = match pool.take() {
            Some(p) => p,
            None => return PumpEnd::Unsupported,
        };
    }
}

/// How one stretch of a pump ended: for good, or with the source quiet and the pipe empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Burst {
    End(PumpEnd),
    Quiet,
}

/// Both sockets' fds (made non-blocking) and a pipe, or `None` when this pair cannot splice.
fn open<S: Stream, D: Stream>(pool: &PipePool, src: &S, dst: &D) -> Option<(RawFd, RawFd, Pipe)> {
    let (src_fd, dst_fd) = (src.splice_fd()?, dst.splice_fd()?);
    let pipe = pool.take()?;
    if let Err(e) = set_nonblocking(src_fd).and_then(|_| set_nonblocking(dst_fd)) {
        pool.put(pipe);
        pool.disable(&e);
        return None;
    }
    Some((src_fd, dst_fd, pipe))
}

/// Gives the pipe back (`put` closes one with bytes left in it); a refused splice turns splice
/// off for this worker.
fn close(pool: &PipePool, pipe: Pipe, refused: bool) {
    if refused {
        pool.disable(&io::Error::from_raw_os_error(libc::EINVAL));
    }
    pool.put(pipe);
}

fn unsupported() -> Outcome {
    Outcome {
        delivered: 0,
        result: Err(Fail::Unsupported),
    }
}

struct Relay<'p> {
    src_fd: RawFd,
    dst_fd: RawFd,
    /// Bytes still to take from the source.
    left: u64,
    delivered: u64,
    pipe: &'p mut Pipe,
}

/// What one non-blocking splice call did.
enum Step {
    Moved,
    Blocked,
    Eof,
}

impl Relay<'_> {
    async fn run<S: Stream, D: Stream>(
        &mut self,
        src: &S,
        dst: &D,
        t: Deadlines,
    ) -> Result<(), Fail> {
        let mut eof = false;
        let mut watch = t.watch_dest.then(|| dst.splice_fd()).flatten();
        // While the destination is blocked: when it last took bytes, and its unacknowledged
        // bytes then. A destination that keeps reading is slow, not stalled, even while its
        // socket stays too full to report room (writability needs room for half of what is
        // queued): those bytes shrink. Looked at every tick of the wait, so `t.write` counts
        // from its last progress to within a tick.
        let mut blocked: Option<(Instant, u32)> = None;
        loop {
            let moved = self.turn(&mut eof)?;
            if self.left == 0 && self.pipe.len == 0 {
                return Ok(());
            }
            if eof && self.pipe.len == 0 {
                return Err(Fail::SourceEof);
            }
            if moved {
                blocked = None;
                continue;
            }
            let side = self.blocked_on();
            let dur = match side {
                Side::Dest => {
                    let (since, _) = *blocked
                        .get_or_insert_with(|| (Instant::now(), unacknowledged(self.dst_fd)));
                    t.write.saturating_sub(since.elapsed()).min(TICK)
                }
                Side::Source => t.read,
            };
            let waited = match (side, watch) {
                (Side::Source, Some(fd)) => {
                    wait_source_watching(src, dst, fd, dur, &mut watch).await
                }
                _ => self.wait_side(src, dst, Some(dur)).await,
            };
            match waited {
                Waited::Ready => {}
                Waited::Timeout(Side::Dest) => {
                    let (since, queued) = blocked
                        .as_mut()
                        .expect("set for every wait on the destination");
                    let now = unacknowledged(self.dst_fd);
                    if now < *queued {
                        *since = Instant::now();
                    } else if since.elapsed() >= t.write {
                        return Err(Fail::DestTimeout);
                    }
                    *queued = now;
                }
                Waited::Timeout(side) => return Err(side.timeout()),
                // A socket that timed out (keep-alive probes unanswered) reports ETIMEDOUT:
                // the peer is gone without closing, a timeout.
                Waited::Error(Side::Dest) if socket_timed_out(self.dst_fd) => {
                    return Err(Fail::DestTimeout)
                }
                Waited::Error(side) => return Err(side.error()),
            }
        }
    }

    /// The loop of [`pump`]: like `run` without a length, with the tunnel's idle limit in place
    /// of per-wait deadlines; it hands back (`Quiet`) instead of waiting on a quiet source.
    async fn pump<S: Stream, D: Stream>(
        &mut self,
        src: &S,
        dst: &D,
        clock: &Activity<'_>,
    ) -> Burst {
        let mut eof = false;
        loop {
            let moved = match self.turn(&mut eof) {
                Ok(moved) => moved,
                Err(Fail::Unsupported) => return Burst::End(PumpEnd::Unsupported),
                Err(_) => return Burst::End(PumpEnd::Error),
            };
            if moved {
                clock.touch();
            }
            if eof && self.pipe.len == 0 {
                return Burst::End(PumpEnd::Eof);
            }
            if moved {
                continue;
            }
            if self.blocked_on() == Side::Source {
                return Burst::Quiet;
            }
            if let Waited::Error(_) = self.wait_side(src, dst, None).await {
                return Burst::End(PumpEnd::Error);
            }
        }
    }

    /// One round of source → pipe → destination; true when either step moved bytes.
    fn turn(&mut self, eof: &mut bool) -> Result<bool, Fail> {
        let filled = if !*eof { self.fill()? } else { Step::Blocked };
        *eof |= matches!(filled, Step::Eof);
        let drained = self.drain()?;
        Ok(matches!(filled, Step::Moved) || matches!(drained, Step::Moved))
    }

    /// The side a stalled relay waits for: bytes waiting in the pipe go first (destination);
    /// only an empty pipe waits for the source.
    fn blocked_on(&self) -> Side {
        if self.pipe.len > 0 {
            Side::Dest
        } else {
            Side::Source
        }
    }

    /// Waits (up to `dur`, if given) for the side the relay is blocked on.
    async fn wait_side<S: Stream, D: Stream>(
        &self,
        src: &S,
        dst: &D,
        dur: Option<Duration>,
    ) -> Waited {
        let side = self.blocked_on();
        let r = match (side, dur) {
            (Side::Dest, Some(d)) => with_timeout(d, dst.wait_writable()).await,
            (Side::Source, Some(d)) => with_timeout(d, src.wait_readable()).await,
            (Side::Dest, None) => Some(dst.wait_writable().await),
            (Side::Source, None) => Some(src.wait_readable().await),
        };
        waited(side, r)
    }

    /// Source → pipe, never past the body's end nor the pipe's free room.
    fn fill(&mut self) -> Result<Step, Fail> {
        let room = self.pipe.cap - self.pipe.len;
        if self.left == 0 || room == 0 {
            return Ok(Step::Blocked);
        }
        let want = room.min(usize::try_from(self.left).unwrap_or(usize::MAX));
        match splice(self.src_fd, self.pipe.write_fd(), want) {
            Ok(0) => Ok(Step::Eof),
            Ok(n) => {
                self.left -= n as u64;
                self.pipe.len += n;
                Ok(Step::Moved)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::Blocked),
            Err(e) if self.untouched() && refused(&e) => Err(Fail::Unsupported),
            Err(_) => Err(Fail::SourceError),
        }
    }

    /// Pipe → destination.
    fn drain(&mut self) -> Result<Step, Fail> {
        if self.pipe.len == 0 {
            return Ok(Step::Blocked);
        }
        match splice(self.pipe.read_fd(), self.dst_fd, self.pipe.len) {
            Ok(0) => Err(Fail::DestError),
            Ok(n) => {
                self.pipe.len -= n;
                self.delivered += n as u64;
                Ok(Step::Moved)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::Blocked),
            // The kernel gave up on a destination that stopped acknowledging.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(Fail::DestTimeout),
            Err(_) => Err(Fail::DestError),
        }
    }

    /// Nothing has moved yet, so the caller can still fall back to copying.
    fn untouched(&self) -> bool {
        self.delivered == 0 && self.pipe.len == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Dest,
}

impl Side {
    fn timeout(self) -> Fail {
        match self {
            Side::Source => Fail::SourceTimeout,
            Side::Dest => Fail::DestTimeout,
        }
    }

    fn error(self) -> Fail {
        match self {
            Side::Source => Fail::SourceError,
            Side::Dest => Fail::DestError,
        }
    }
}

/// How a readiness wait ended.
enum Waited {
    Ready,
    Timeout(Side),
    Error(Side),
}

/// Whether the socket's pending error is ETIMEDOUT (taking it clears it).
fn socket_timed_out(fd: RawFd) -> bool {
    // SAFETY: `fd` is an open socket of the relay for the duration of the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let err = socket2::SockRef::from(&fd).take_error();
    matches!(err, Ok(Some(e)) if e.raw_os_error() == Some(libc::ETIMEDOUT))
}

/// A readiness wait's outcome (`None`: it timed out).
fn waited(side: Side, r: Option<io::Result<()>>) -> Waited {
    match r {
        Some(Ok(())) => Waited::Ready,
        Some(Err(_)) => Waited::Error(side),
        None => Waited::Timeout(side),
    }
}

/// Waits up to `dur` for the source while watching the destination client (`fd`): a client
/// that left fails the wait as a destination error at once; one that sent bytes (a pipelined
/// request) is not watched any more (`watch` cleared), as in `relay::stream`. The first tick
/// of the wait is not watched: while a body flows the source is back within it, and its waits
/// cost no look at the client.
async fn wait_source_watching<S: Stream, D: Stream>(
    src: &S,
    dst: &D,
    fd: RawFd,
    dur: Duration,
    watch: &mut Option<RawFd>,
) -> Waited {
    match waited(
        Side::Source,
        with_timeout(dur.min(TICK), src.wait_readable()).await,
    ) {
        Waited::Timeout(Side::Source) if dur > TICK => {}
        w => return w,
    }
    let mut wait = pin!(with_timeout(dur - TICK, src.wait_readable()));
    loop {
        if watch.is_none() {
            return waited(Side::Source, wait.await);
        }
        monoio::select! {
            r = &mut wait => return waited(Side::Source, r),
            ready = dst.wait_readable() => match ready.map_or(Peer::Gone, |()| peek(fd)) {
                Peer::Gone => return Waited::Error(Side::Dest),
                Peer::Data => *watch = None,
                Peer::Spurious => {}
            },
        }
    }
}

/// Errors that mean "this kernel or socket type cannot splice", not "the peer failed".
fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// One non-blocking splice between a socket and a pipe (either direction).
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    // SAFETY: both fds are open for the duration of the call (borrowed from live streams and
    // a pipe we own); null offsets are required for sockets and pipes; no memory is passed.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// splice(2) on a blocking socket would block the worker thread however SPLICE_F_NONBLOCK is
/// set (the flag only covers the pipe side), and io_uring accepts leave sockets blocking.
/// Setting O_NONBLOCK is harmless to the runtime: its recv/send ops poll on EAGAIN.
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an open fd; F_GETFL takes no argument.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: as above; F_SETFL takes an int of flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
