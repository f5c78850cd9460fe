//! The HTTP/1.1 connection loop: wait for a request head, run the exchange, repeat while both
//! sides keep the connection; hand upgraded connections to the tunnel relay.
//!
//! Idle connections do not park a buffer: after a short hot wait with the buffers held (cheap
//! under load: one read per request), the buffers go back to the worker's pool and the
//! connection waits for readiness alone, so 10,000 idle keep-alive clients cost only their
//! task and socket.

use std::mem::take;
use std::rc::Rc;
use std::time::Duration;

use crate::http::head::HeadLimits;
use crate::http::parse_request;
use crate::net::{read_append_timeout, with_timeout, write_all, Read, Stream};
use crate::relay::tunnel;

use super::errors::error_response;
use super::exchange::{exchange, Next};
use super::state::{Buffers, ConnInfo, WorkerState};

/// How long an idle connection keeps its buffers before waiting for readiness without them.
const HOT_IDLE: Duration = Duration::from_millis(500);

enum Head {
    Ready,
    Closed,
    /// Reject with this status and close.
    Reject(u16, &'static str),
}

/// Serves one client connection until it closes.
pub async fn serve<S: Stream>(mut client: S, info: ConnInfo, w: Rc<WorkerState>) {
    let g = w.generation();
    let limits = HeadLimits {
        max_head: g.snap.limits.max_head_bytes,
        max_uri: g.snap.limits.max_uri_bytes,
        max_headers: g.snap.limits.max_headers,
    };
    let mut bufs: Option<Box<Buffers>> = Some(w.take_buffers());
    let mut first = true;
    loop {
        match next_head(&mut client, &mut bufs, &info, &w, &limits, first).await {
            Head::Ready => {}
            Head::Closed => break,
            Head::Reject(status, why) => {
                let b = bufs.get_or_insert_with(|| w.take_buffers());
                error_response(&mut b.out, status, why, true);
                let _ = with_timeout(
                    info.header_timeout,
                    write_all(&mut client, take(&mut b.out)),
                )
                .await;
                break;
            }
        }
        first = false;
        let b = bufs.as_mut().expect("next_head leaves buffers in place");
        w.in_flight.set(w.in_flight.get() + 1);
        // Boxed so the connection future stays small while it sits idle.
        let next = Box::pin(exchange(&mut client, b, &info, &g, &w)).await;
        w.in_flight.set(w.in_flight.get() - 1);
        match next {
            Next::KeepAlive => b.compact(),
            Next::Close => break,
            Next::Upgrade(up, idle) => {
                // Copied out so the 64 KiB buffer goes back to the pool with the rest.
                let pending_up = b.ubuf.to_vec();
                b.ubuf.clear();
                let pending_client = b.client_pending().to_vec();
                let b = bufs.take().expect("buffers");
                w.put_buffers(b);
                tunnel::run(client, up.stream, pending_client, pending_up, idle).await;
                return;
            }
        }
    }
    if let Some(b) = bufs {
        w.put_buffers(b);
    }
}

/// Gets the next complete request head into the buffers' `cbuf`.
async fn next_head<S: Stream>(
    client: &mut S,
    bufs: &mut Option<Box<Buffers>>,
    info: &ConnInfo,
    w: &WorkerState,
    limits: &HeadLimits,
    first: bool,
) -> Head {
    loop {
        if let Some(b) = bufs.as_mut() {
            if !b.cbuf.is_empty() {
                match parse_request(&b.cbuf, limits, &mut b.req) {
                    Ok(true) => return Head::Ready,
                    Ok(false) => {}
                    Err(e) => return Head::Reject(e.status(), e.reason()),
                }
            }
        }
        let waiting_new = bufs.as_ref().is_none_or(|b| b.cbuf.is_empty());
        if waiting_new && !first && w.draining.get() {
            return Head::Closed;
        }
        if waiting_new {
            let wait = if first {
                info.header_timeout
            } else {
                info.keepalive_timeout
            };
            if !idle_wait(client, bufs, w, wait).await {
                return Head::Closed;
            }
            continue;
        }
        // Part of a head is here: the rest must come within the header timeout.
        let b = bufs.as_mut().expect("partial head implies buffers");
        let (r, buf) = read_append_timeout(client, take(&mut b.cbuf), info.header_timeout).await;
        b.cbuf = buf;
        match r {
            Ok(Read::Data(_)) => {}
            Ok(Read::Timeout) => return Head::Reject(408, "request head timeout"),
            _ => return Head::Closed,
        }
    }
}

/// Waits up to `wait` for the first bytes of a request. Returns false when the connection
/// should close (timeout, EOF, error).
async fn idle_wait<S: Stream>(
    client: &mut S,
    bufs: &mut Option<Box<Buffers>>,
    w: &WorkerState,
    wait: Duration,
) -> bool {
    let hot = wait.min(HOT_IDLE);
    let b = bufs.get_or_insert_with(|| w.take_buffers());
    let (r, buf) = read_append_timeout(client, take(&mut b.cbuf), hot).await;
    b.cbuf = buf;
    match r {
        Ok(Read::Data(_)) => return true,
        Ok(Read::Timeout) if wait > hot => {}
        _ => return false,
    }
    // Cold: give the buffers back and wait for readiness only.
    if let Some(b) = bufs.take() {
        w.put_buffers(b);
    }
    match with_timeout(wait - hot, client.wait_readable()).await {
        Some(Ok(())) => {}
        _ => return false,
    }
    let b = bufs.insert(w.take_buffers());
    let (r, buf) = read_append_timeout(client, take(&mut b.cbuf), Duration::from_secs(1)).await;
    b.cbuf = buf;
    matches!(r, Ok(Read::Data(_)))
}
