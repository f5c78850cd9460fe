//! Bidirectional tunnel for upgraded connections (101 Switching Protocols, e.g. WebSocket).
//! Each direction copies as bytes arrive; EOF on one side is passed on as a half-close; the
//! tunnel closes after both directions ended, on any error, or after `idle` with no traffic
//! either way.

use std::cell::Cell;
use std::pin::pin;
use std::time::{Duration, Instant};

use monoio::io::{AsyncWriteRent, Splitable};

use crate::net::{read_append_timeout, write_all, Read, Stream};

const TUNNEL_BUF: usize = 16 * 1024;

pub async fn run<C: Stream, U: Stream>(
    client: C,
    upstream: U,
    to_upstream: Vec<u8>,
    to_client: Vec<u8>,
    idle: Duration,
) {
    let last = Cell::new(Instant::now());
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let mut a = pin!(copy(&mut cr, &mut uw, to_upstream, &last, idle));
    let mut b = pin!(copy(&mut ur, &mut cw, to_client, &last, idle));
    // A clean end of one direction waits for the other; an error or idle timeout ends both.
    monoio::select! {
        ok = &mut a => if ok { b.await; },
        ok = &mut b => if ok { a.await; },
    }
}

/// Copies until EOF (true, after half-closing the writer) or error/idle timeout (false).
async fn copy<R, W>(
    r: &mut R,
    w: &mut W,
    pending: Vec<u8>,
    last: &Cell<Instant>,
    idle: Duration,
) -> bool
where
    R: monoio::io::CancelableAsyncReadRent,
    W: AsyncWriteRent,
{
    let mut buf = pending;
    buf.reserve(TUNNEL_BUF);
    if !buf.is_empty() {
        let (res, b) = write_all(w, buf).await;
        if res.is_err() {
            return false;
        }
        buf = b;
    }
    loop {
        buf.clear();
        let left = idle.saturating_sub(last.get().elapsed());
        if left.is_zero() {
            return false;
        }
        let (res, b) = read_append_timeout(r, buf, left).await;
        buf = b;
        match res {
            Ok(Read::Data(_)) => {
                last.set(Instant::now());
                let (res, b) = write_all(w, buf).await;
                buf = b;
                if res.is_err() {
                    return false;
                }
            }
            // The other direction may have been busy; re-check against the shared clock.
            Ok(Read::Timeout) => continue,
            Ok(Read::Eof) => {
                let _ = w.shutdown().await;
                return true;
            }
            Err(_) => return false,
        }
    }
}
