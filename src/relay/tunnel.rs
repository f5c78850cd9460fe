//! Bidirectional tunnel for upgraded connections (101 Switching Protocols, e.g. WebSocket).
//!
//! Two directions run side by side, each a copy loop: bytes are written on as they
//! arrive (no batching), and EOF on one side is passed on as a half-close (`shutdown(SHUT_WR)`)
//! of the other, so a close travels both ways while the opposite direction may still drain.
//! The tunnel ends when both directions reached EOF, on any error (a reset or failed write
//! ends both directions at once), or after `idle` with no bytes either way (the route's
//! `tunnel_idle_timeout`, not its response timeout). Ending drops both sockets, closing both
//! file descriptors.
//!
//! The idle limit holds no timer: both sockets are registered in the worker's
//! [`SocketDeadlines`] and re-armed on every byte moved (from the tick clock, no clock read),
//! and an expired tunnel has both sockets shut down both ways, which ends every read, write
//! and readiness wait in it. A message costs no timer and no clock read. A write stalled on a
//! peer that stopped reading waits while the other direction stays busy (the tunnel is in
//! use), and ends with the idle limit once nothing moves either way.
//!
//! How bytes move follows the route's `relay` mode ([`TunnelRelay`]). With `auto`, a
//! direction copies (one read and one write ring op per message) until a read fills a 16 KiB
//! buffer, then splices (socket → pipe → socket with a pipe from the worker's pool, no
//! user-space copy) until its source goes quiet, then copies again: WebSocket traffic is mostly
//! small messages, for which two splices and a readiness wait cost more than a copy (see
//! benches/README-streaming.md), while bulk streams go zero-copy. `splice` splices every byte,
//! `copy` never does; a kernel that refuses splice falls back to copy. The end-of-tunnel rules
//! are the same for both movers.

use std::cell::Cell;
use std::pin::pin;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::config::RelayMode;
use crate::deadlines::{Deadline, SocketDeadlines};
use crate::net::{grow_if_full, halves, read_append, write_all, AsStream, Stream};

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

/// The idle limit both directions share: one deadline per socket, re-armed on every byte.
pub struct Activity<'w> {
    idle: Duration,
    watch: [Deadline<'w>; 2],
}

impl<'w> Activity<'w> {
    pub fn new(deadlines: &'w SocketDeadlines, fds: [i32; 2], idle: Duration) -> Activity<'w> {
        Activity {
            idle,
            watch: fds.map(|fd| deadlines.register_closing(fd, idle)),
        }
    }

    /// Bytes moved: the idle limit counts from now.
    pub fn touch(&self) {
        for d in &self.watch {
            d.arm(self.idle);
        }
    }

    /// The tunnel went idle and its sockets were shut down.
    pub fn expired(&self) -> bool {
        self.watch.iter().any(Deadline::expired)
    }

    /// How a direction that stopped on `end` ended: idle if the limit shut it down.
    pub fn end(&self, end: End) -> End {
        if self.expired() {
            End::Idle
        } else {
            end
        }
    }
}

/// How a tunnel moves bytes, from the route's `relay` mode.
#[derive(Clone, Copy)]
pub enum TunnelRelay<'p> {
    /// Read and write through user space only.
    Copy,
    /// Copy, switching a direction to splice while it carries bulk data (`relay = "auto"`):
    /// for small messages a read and a write cost less than two splices and a readiness wait.
    Adaptive(&'p PipePool),
    /// Splice every byte (`relay = "splice"`).
    Splice(&'p PipePool),
}

impl<'p> TunnelRelay<'p> {
    pub fn new(mode: RelayMode, pipes: &'p PipePool) -> TunnelRelay<'p> {
        match mode {
            RelayMode::Copy => TunnelRelay::Copy,
            RelayMode::Auto => TunnelRelay::Adaptive(pipes),
            RelayMode::Splice => TunnelRelay::Splice(pipes),
        }
    }
}

/// A read of at least this much (a full buffer, grown from 4 KiB) marks a direction carrying
/// bulk data: with `TunnelRelay::Adaptive` it splices until its source goes quiet.
const BULK_READ: usize = 16 * 1024;

/// How a tunnel ended, and what it carried (for its access-log line).
pub struct Tunneled {
    pub ends: (End, End),
    pub to_upstream: u64,
    pub to_client: u64,
}

/// Relays until both directions ended (or one failed / idled). `to_upstream` and `to_client`
/// are bytes already read from each side (after the request / response heads).
pub async fn run<C: Stream, U: Stream>(
    mut client: C,
    mut upstream: U,
    to_upstream: Vec<u8>,
    to_client: Vec<u8>,
    idle: Duration,
    relay: TunnelRelay<'_>,
    deadlines: &SocketDeadlines,
) -> Tunneled {
    // Declared after the sockets, so it deregisters them before they close.
    let act = Activity::new(deadlines, [client.socket_fd(), upstream.socket_fd()], idle);
    let (mut cr, mut cw) = halves(&mut client);
    let (mut ur, mut uw) = halves(&mut upstream);
    let (up_bytes, client_bytes) = (Cell::new(0), Cell::new(0));
    let mut a = pin!(direction(
        &mut cr,
        &mut uw,
        to_upstream,
        &act,
        relay,
        &up_bytes
    ));
    let mut b = pin!(direction(
        &mut ur,
        &mut cw,
        to_client,
        &act,
        relay,
        &client_bytes
    ));
    // A clean end of one direction waits for the other; an error or idle timeout ends both.
    let ends = monoio::select! {
        ea = &mut a => if ea == End::Eof { (ea, b.await) } else { (ea, End::Error) },
        eb = &mut b => if eb == End::Eof { (a.await, eb) } else { (End::Error, eb) },
    };
    // The sockets drop (and close) when this returns.
    Tunneled {
        ends,
        to_upstream: up_bytes.get(),
        to_client: client_bytes.get(),
    }
}

/// One direction, by the tunnel's relay mode. Pending bytes always go by copy.
async fn direction<R, W>(
    r: &mut R,
    w: &mut W,
    pending: Vec<u8>,
    act: &Activity<'_>,
    relay: TunnelRelay<'_>,
    moved: &Cell<u64>,
) -> End
where
    R: AsyncReadRent + AsStream,
    W: AsyncWriteRent + AsStream,
{
    let (pool, until_quiet) = match relay {
        TunnelRelay::Copy => return copy(r, w, pending, act, None, moved).await.end(),
        TunnelRelay::Splice(pool) => {
            if !pending.is_empty() {
                if let Err(end) = pass_on(w, pending, act, moved).await {
                    return end;
                }
            }
            (pool, false)
        }
        TunnelRelay::Adaptive(pool) => {
            match copy(r, w, pending, act, Some(BULK_READ), moved).await {
                Copied::End(end) => return end,
                Copied::Bulk => {}
            }
            (pool, true)
        }
    };
    loop {
        match splice::pump(pool, r.as_stream(), w.as_stream(), act, until_quiet, moved).await {
            PumpEnd::Eof if act.expired() => return End::Idle,
            PumpEnd::Eof => {
                let _ = w.shutdown().await;
                return End::Eof;
            }
            PumpEnd::Error => return act.end(End::Error),
            PumpEnd::Unsupported => return copy(r, w, Vec::new(), act, None, moved).await.end(),
            // The bulk is through: back to copying (with a small buffer again) until the next.
            PumpEnd::Quiet => match copy(r, w, Vec::new(), act, Some(BULK_READ), moved).await {
                Copied::End(end) => return end,
                Copied::Bulk => {}
            },
        }
    }
}

/// Writes `buf` on, counts it and touches the idle limit; the buffer comes back for reuse.
async fn pass_on<W: AsyncWriteRent>(
    w: &mut W,
    buf: Vec<u8>,
    act: &Activity<'_>,
    moved: &Cell<u64>,
) -> Result<Vec<u8>, End> {
    let n = buf.len() as u64;
    let (res, buf) = write_all(w, buf).await;
    if res.is_err() {
        return Err(act.end(End::Error));
    }
    moved.set(moved.get() + n);
    act.touch();
    Ok(buf)
}

/// How a copy stretch stopped.
enum Copied {
    End(End),
    /// A read of at least the bulk size was relayed: the caller may splice from here.
    Bulk,
}

impl Copied {
    fn end(self) -> End {
        match self {
            Copied::End(end) => end,
            Copied::Bulk => unreachable!("copy without a bulk size never stops for bulk"),
        }
    }
}

/// Copies `r` to `w` until EOF (then half-closes `w`), an error, the shared idle limit, or
/// (with `bulk`) a read of at least that many bytes, once it is written.
async fn copy<R, W>(
    r: &mut R,
    w: &mut W,
    pending: Vec<u8>,
    act: &Activity<'_>,
    bulk: Option<usize>,
    moved: &Cell<u64>,
) -> Copied
where
    R: AsyncReadRent,
    W: AsyncWriteRent,
{
    let mut buf = pending;
    buf.reserve(TUNNEL_BUF_START);
    if !buf.is_empty() {
        buf = match pass_on(w, buf, act, moved).await {
            Ok(b) => b,
            Err(end) => return Copied::End(end),
        };
    }
    loop {
        buf.clear();
        let (res, b) = read_append(r, buf).await;
        buf = b;
        match res {
            Ok(n) if n > 0 => {
                act.touch();
                buf = match pass_on(w, buf, act, moved).await {
                    Ok(b) => b,
                    Err(end) => return Copied::End(end),
                };
                if bulk.is_some_and(|min| n >= min) {
                    return Copied::Bulk;
                }
                grow_if_full(&mut buf);
            }
            // An idle tunnel's shut-down socket reads as EOF too.
            Ok(_) if act.expired() => return Copied::End(End::Idle),
            Ok(_) => {
                let _ = w.shutdown().await;
                return Copied::End(End::Eof);
            }
            Err(_) => return Copied::End(act.end(End::Error)),
        }
    }
}
