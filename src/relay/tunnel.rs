//! Bidirectional tunnel for upgraded connections (101 Switching Protocols, e.g. WebSocket).
//!
//! Two directions run side by side, each a [`copy`] loop: bytes are written on as they
//! arrive (no batching), and EOF on one side is passed on as a half-close (`shutdown(SHUT_WR)`)
//! of the other, so a close travels both ways while the opposite direction may still drain.
//! The tunnel ends when both directions reached EOF, on any error (a reset or failed write
//! ends both directions at once), or after `idle` with no bytes either way (the route's
//! `tunnel_idle_timeout`, not its response timeout). Ending drops both sockets, closing both
//! file descriptors.
//!
//! For plain TCP on both sides (`Stream::splice_fd` is `Some`) on a route that allows splice,
//! each direction is a [`splice::pump`] instead (socket → pipe → socket, no user-space copy)
//! with its own pipe from the worker's pool, after any pending bytes were written by copy; a
//! kernel that refuses splice falls back to [`copy`]. The end-of-tunnel rules are the same
//! for both movers.

use std::cell::Cell;
use std::pin::pin;
use std::time::{Duration, Instant};

use monoio::io::{AsyncWriteRent, CancelableAsyncReadRent};

use crate::net::{
    grow_if_full, halves, read_append_timeout, with_timeout, write_all, AsStream, Read, Stream,
};

use super::pipes::PipePool;
use super::splice::{self, PumpEnd};

/// Each direction's buffer starts small (a parked read owns its buffer, and 10,000 mostly
/// quiet WebSockets must not cost 10,000 large buffers) and grows with `grow_if_full` whenever
/// a read fills it (bulk transfers).
const TUNNEL_BUF_START: usize = 4 * 1024;

/// How a direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The reader reached EOF and the writer was half-closed.
    Eof,
    /// A read or write failed.
    Error,
    /// No bytes either way for the idle timeout.
    Idle,
}

/// Shared idle clock of both directions.
pub struct Activity {
    last: Cell<Instant>,
    idle: Duration,
}

impl Activity {
    pub fn new(idle: Duration) -> Activity {
        Activity {
            last: Cell::new(Instant::now()),
            idle,
        }
    }

    /// The tunnel's idle timeout.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    pub fn touch(&self) {
        self.last.set(Instant::now());
    }

    /// Time left before the tunnel counts as idle.
    pub fn left(&self) -> Duration {
        self.idle.saturating_sub(self.last.get().elapsed())
    }
}

/// Relays until both directions ended (or one failed / idled). `to_upstream` and `to_client`
/// are bytes already read from each side (after the request / response heads). With `pipes`,
/// directions splice where both sockets allow it.
pub async fn run<C: Stream, U: Stream>(
    mut client: C,
    mut upstream: U,
    to_upstream: Vec<u8>,
    to_client: Vec<u8>,
    idle: Duration,
    pipes: Option<&PipePool>,
) -> (End, End) {
    let act = Activity::new(idle);
    let (mut cr, mut cw) = halves(&mut client);
    let (mut ur, mut uw) = halves(&mut upstream);
    let mut a = pin!(direction(&mut cr, &mut uw, to_upstream, &act, pipes));
    let mut b = pin!(direction(&mut ur, &mut cw, to_client, &act, pipes));
    // A clean end of one direction waits for the other; an error or idle timeout ends both.
    let ends = monoio::select! {
        ea = &mut a => if ea == End::Eof { (ea, b.await) } else { (ea, End::Error) },
        eb = &mut b => if eb == End::Eof { (a.await, eb) } else { (End::Error, eb) },
    };
    // The sockets drop (and close) when this returns.
    ends
}

/// One direction: pending bytes by copy, then splice when possible, else copy.
async fn direction<R, W>(
    r: &mut R,
    w: &mut W,
    pending: Vec<u8>,
    act: &Activity,
    pipes: Option<&PipePool>,
) -> End
where
    R: CancelableAsyncReadRent + AsStream,
    W: AsyncWriteRent + AsStream,
{
    let Some(pool) = pipes else {
        return copy(r, w, pending, act).await;
    };
    if !pending.is_empty() {
        let (res, _) = write_all(w, pending).await;
        if res.is_err() {
            return End::Error;
        }
        act.touch();
    }
    match splice::pump(pool, r.as_stream(), w.as_stream(), act).await {
        PumpEnd::Eof => {
            let _ = w.shutdown().await;
            End::Eof
        }
        PumpEnd::Error => End::Error,
        PumpEnd::Idle => End::Idle,
        PumpEnd::Unsupported => copy(r, w, Vec::new(), act).await,
    }
}

/// Copies `r` to `w` until EOF (then half-closes `w`), an error, or the shared idle timeout.
pub async fn copy<R, W>(r: &mut R, w: &mut W, pending: Vec<u8>, act: &Activity) -> End
where
    R: CancelableAsyncReadRent,
    W: AsyncWriteRent,
{
    let mut buf = pending;
    buf.reserve(TUNNEL_BUF_START);
    if !buf.is_empty() {
        let (res, b) = write_all(w, buf).await;
        if res.is_err() {
            return End::Error;
        }
        buf = b;
    }
    loop {
        buf.clear();
        let left = act.left();
        if left.is_zero() {
            return End::Idle;
        }
        let (res, b) = read_append_timeout(r, buf, left).await;
        buf = b;
        match res {
            Ok(Read::Data(_)) => {
                act.touch();
                // A peer that stops reading stalls this write; that is idleness too.
                let Some((res, b)) = with_timeout(act.idle, write_all(w, buf)).await else {
                    return End::Idle;
                };
                buf = b;
                if res.is_err() {
                    return End::Error;
                }
                act.touch();
                grow_if_full(&mut buf);
            }
            // The other direction may have been busy; re-check against the shared clock.
            Ok(Read::Timeout) => continue,
            Ok(Read::Eof) => {
                let _ = w.shutdown().await;
                return End::Eof;
            }
            Err(_) => return End::Error,
        }
    }
}
