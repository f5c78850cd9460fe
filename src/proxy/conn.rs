//! The HTTP/1.1 connection loop: wait for a request head, run the exchange, repeat while both
//! sides keep the connection; hand upgraded connections to the tunnel relay.
//!
//! Idle connections mostly do not park a buffer: beyond a small number per worker that wait
//! with their buffers (cheap under load: one read per request), idle connections give the
//! buffers back to the worker's pool and wait for readiness alone, so 10,000 idle keep-alive
//! clients cost little more than their task and socket.

use std::cell::Cell;
use std::future::Future;
use std::mem::take;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::accesslog::Entry;
use crate::config::{LimitsSpec, RelayMode};
use crate::deadlines::SocketDeadlines;
use crate::http::head::{normalize_target, HeadLimits};
use crate::http::parse_request;
use crate::net::{read_append, write_all_within, Stream};
use crate::relay::tunnel::{self, TunnelRelay};
use crate::upstream::UpConn;

use super::errors::error_response;
use super::exchange::{exchange, Next};
use super::state::{Buffers, ConnInfo, Generation, WorkerState};

/// Idle connections per worker that may wait holding their buffers (≈ 12 KiB each).
const HOT_IDLE_MAX: usize = 128;

enum Head {
    Ready,
    Closed,
    /// Reject with this status and close.
    Reject(u16, &'static str),
}

/// Serves one client connection until it closes; counts it in `open_connections` (the caller
/// checked the limit) for as long as it lives.
///
/// A plain function returning one `async move` block, not an `async fn`: an async fn keeps its
/// arguments twice in its state (as passed and as locals), and this state is what every
/// connection, idle or not, costs (see the memory figures in benches/README.md).
pub fn serve<S: Stream>(
    mut client: S,
    info: ConnInfo,
    w: Rc<WorkerState>,
) -> impl Future<Output = ()> {
    // Counted at once (the accept loop checks the limit before the task first runs).
    w.open_connections.set(w.open_connections.get() + 1);
    async move {
        let _open = Counted::adopt(&w.open_connections);
        let mut bufs: Option<Box<Buffers>> = Some(w.take_buffers());
        let mut first = true;
        let mut g = w.generation();
        loop {
            // When the request's first bytes came (read only when the access log is on).
            let mut started = None;
            let head = next_head(
                &mut client,
                &mut bufs,
                &info,
                &w,
                &mut g,
                (first, &mut started),
            );
            match head.await {
                Head::Ready => first = false,
                Head::Closed => break,
                Head::Reject(status, why) => {
                    let took = started.map_or(Duration::ZERO, |t: Instant| t.elapsed());
                    // Boxed: rare, and its write would otherwise size every connection.
                    Box::pin(reject(
                        &mut client,
                        &mut bufs,
                        &info,
                        &w,
                        (status, why),
                        took,
                    ))
                    .await;
                    // The rest of what the client sends is unread: close in stages.
                    Box::pin(linger(&mut client, &mut bufs, &w)).await;
                    break;
                }
            }
            // A block, so `next` (which holds an upstream connection) is gone before the
            // tunnel is awaited and never takes room in this future's state.
            let (tunnel, log) = {
                let b = bufs.as_mut().expect("next_head leaves buffers in place");
                let in_flight = Counted::new(&w.in_flight);
                // Boxed so the connection future stays small while it sits idle.
                let next = Box::pin(exchange(&mut client, b, &info, &g, &w, started)).await;
                drop(in_flight);
                match next {
                    Next::KeepAlive => {
                        b.compact();
                        continue;
                    }
                    Next::Close => {
                        // A body cut short or bytes after the request may still be on their
                        // way (nginx lingers on the same signs).
                        if b.req.body.has_body() || !b.client_pending().is_empty() {
                            Box::pin(linger(&mut client, &mut bufs, &w)).await;
                        }
                        break;
                    }
                    Next::Upgrade(up, idle, relay, log) => {
                        let b = bufs.take().expect("buffers");
                        (tunnel_from(client, up, b, idle, relay, &w), log)
                    }
                }
            };
            // An open tunnel is in flight: a drain gives it `drain_timeout` like a request
            // (nginx's worker_shutdown_timeout, HAProxy's hard-stop-after), whatever else runs.
            let _busy = Counted::new(&w.in_flight);
            let carried = tunnel.await;
            if let Some(l) = log {
                w.log.log(&Entry {
                    client: &info.peer_ip,
                    method: &l.method,
                    target: &l.target,
                    status: 101,
                    bytes: l.bytes + carried.to_client,
                    upstream: l.upstream,
                    duration: l.start.elapsed(),
                });
            }
            return;
        }
        if let Some(b) = bufs {
            w.put_buffers(b);
        }
    }
}

fn head_limits(l: &LimitsSpec) -> HeadLimits {
    HeadLimits {
        max_head: l.max_head_bytes,
        max_uri: l.max_uri_bytes,
        max_headers: l.max_headers,
    }
}

/// One unit of a worker counter (open connections, requests in flight) for as long as it lives,
/// so the count stays right however the connection's task ends (a contained panic included;
/// a drain waits for `in_flight` to reach zero).
struct Counted<'w>(&'w Cell<usize>);

impl<'w> Counted<'w> {
    fn new(c: &'w Cell<usize>) -> Counted<'w> {
        c.set(c.get() + 1);
        Counted(c)
    }

    /// Takes over a unit already counted.
    fn adopt(c: &'w Cell<usize>) -> Counted<'w> {
        Counted(c)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Answers a request head that did not parse with its 4xx (the caller closes).
async fn reject<S: Stream>(
    client: &mut S,
    bufs: &mut Option<Box<Buffers>>,
    info: &ConnInfo,
    w: &WorkerState,
    (status, why): (u16, &'static str),
    took: Duration,
) {
    let b = bufs.get_or_insert_with(|| w.take_buffers());
    // The head may not have parsed; its first word still tells a HEAD.
    let start = b.cbuf.iter().position(|&c| c != b'\r' && c != b'\n');
    let head = start.is_some_and(|i| b.cbuf[i..].starts_with(b"HEAD "));
    let bytes = error_response(&mut b.out, status, why, true, head) as u64;
    // The head did not parse: log what ringway answered, without a request line.
    w.log.log_unread(&info.peer_ip, status, bytes, took);
    let _ = write_all_within(client, take(&mut b.out), info.send_limit(&w.waits)).await;
}

/// How long a closing connection keeps reading what the client still sends, in all and
/// between reads.
const LINGER_TOTAL: Duration = Duration::from_secs(5);
const LINGER_IDLE: Duration = Duration::from_secs(2);

/// Closes in stages (RFC 9112 §9.6) a connection whose client may still be sending (a body
/// ringway answered before reading, or bytes after a rejected head): see [`close_in_stages`].
async fn linger<S: Stream>(client: &mut S, bufs: &mut Option<Box<Buffers>>, w: &WorkerState) {
    let b = bufs.get_or_insert_with(|| w.take_buffers());
    let buf = take(&mut b.cbuf);
    b.cbuf = close_in_stages(client, buf, &w.waits, LINGER_TOTAL, LINGER_IDLE).await;
    b.cpos = 0;
}

/// After an answer sent before the whole request was read: a FIN, then what the client still
/// sends is read into `buf` and dropped until it closes too, for at most `total` in all and
/// `idle` between reads. Closing with unread bytes would make the kernel send a reset, which
/// can destroy the answer before the client reads it. Gives `buf` back, emptied.
pub async fn close_in_stages<S: Stream>(
    client: &mut S,
    mut buf: Vec<u8>,
    waits: &SocketDeadlines,
    total: Duration,
    idle: Duration,
) -> Vec<u8> {
    let fd = client.socket_fd();
    // SAFETY: `fd` belongs to `client`, which is open for the duration of the call.
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } == 0 {
        let until = waits.now() + total;
        while waits.now() < until {
            buf.clear();
            // Each wait ends at the idle limit or the total, whichever comes first.
            let left = until.saturating_duration_since(waits.now());
            let deadline = waits.register(fd, idle.min(left));
            let (r, b) = read_append(client, buf).await;
            buf = b;
            if deadline.expired() || !matches!(r, Ok(n) if n > 0) {
                break;
            }
        }
    }
    buf.clear();
    buf
}

/// Turns an upgraded connection into a tunnel. The tunnel's future is boxed and built here, so
/// the connection future never holds its large, rare state (nor the upstream connection)
/// while it waits for requests.
fn tunnel_from<S: Stream>(
    client: S,
    up: UpConn,
    mut b: Box<Buffers>,
    idle: Duration,
    relay: RelayMode,
    w: &Rc<WorkerState>,
) -> Pin<Box<impl Future<Output = tunnel::Tunneled> + '_>> {
    // Copied out so the 64 KiB buffer goes back to the pool with the rest.
    let pending_up = b.ubuf.to_vec();
    b.ubuf.clear();
    let pending_client = b.client_pending().to_vec();
    w.put_buffers(b);
    Box::pin(tunnel::run(
        client,
        up.stream,
        pending_client,
        pending_up,
        idle,
        TunnelRelay::new(relay, &w.pipes),
        &w.waits,
    ))
}

/// Gets the next complete request head into the buffers' `cbuf`. (This and `idle_wait` are
/// functions returning one async block for the reason given at `serve`.)
// Written out on purpose (see `serve`): an async fn would store its arguments twice.
#[allow(clippy::manual_async_fn)]
fn next_head<'a, S: Stream>(
    client: &'a mut S,
    bufs: &'a mut Option<Box<Buffers>>,
    info: &'a ConnInfo,
    w: &'a WorkerState,
    g: &'a mut Rc<Generation>,
    (first, started): (bool, &'a mut Option<Instant>),
) -> impl Future<Output = Head> + 'a {
    async move {
        // The rest of a head must come within the header timeout, counted once from its first
        // bytes (not per read, or a client dripping a byte at a time would never be cut off).
        let mut head_deadline = None;
        loop {
            if let Some(b) = bufs.as_mut() {
                if !b.cbuf.is_empty() {
                    // Each request takes the config current when its bytes arrive: after a
                    // reload, kept-alive connections parse, route and forward by the new one
                    // too (one atomic load when unchanged).
                    if !w.is_current(g) {
                        *g = w.generation();
                    }
                    if started.is_none() && w.log.enabled() {
                        *started = Some(Instant::now());
                    }
                    let limits = head_limits(&g.snap.limits);
                    // Only a complete head has a target to normalise.
                    let parsed = parse_request(&b.cbuf, &limits, &mut b.req).and_then(|done| {
                        if done {
                            normalize_target(&mut b.cbuf, &mut b.req)?;
                        }
                        Ok(done)
                    });
                    match parsed {
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
            let deadline = head_deadline
                .get_or_insert_with(|| w.waits.register(client.socket_fd(), info.header_timeout));
            let (r, buf) = read_append(client, take(&mut b.cbuf)).await;
            b.cbuf = buf;
            if deadline.expired() {
                return Head::Reject(408, "request head timeout");
            }
            match r {
                Ok(n) if n > 0 => {}
                _ => return Head::Closed,
            }
        }
    }
}

/// Waits up to `wait` for the first bytes of a request. Returns false when the connection
/// should close (deadline passed, EOF, error).
///
/// While few connections are idle, a connection waits with its buffers: one read op per
/// request. Past `HOT_IDLE_MAX` idle connections per worker, further ones give their buffers
/// back and wait for readiness alone, so memory stays bounded however many clients sit idle.
/// Neither wait holds a timer: the worker's deadline sweep ends it (see `deadlines`).
#[allow(clippy::manual_async_fn)] // see `serve`
fn idle_wait<'a, S: Stream>(
    client: &'a mut S,
    bufs: &'a mut Option<Box<Buffers>>,
    w: &'a WorkerState,
    wait: Duration,
) -> impl Future<Output = bool> + 'a {
    async move {
        let deadline = w.waits.register_idle(client.socket_fd(), wait);
        if w.hot_idle.get() < HOT_IDLE_MAX {
            let b = bufs.get_or_insert_with(|| w.take_buffers());
            w.hot_idle.set(w.hot_idle.get() + 1);
            let (r, buf) = read_append(client, take(&mut b.cbuf)).await;
            w.hot_idle.set(w.hot_idle.get() - 1);
            b.cbuf = buf;
            return matches!(r, Ok(n) if n > 0) && !deadline.expired();
        }
        if let Some(b) = bufs.take() {
            w.put_buffers(b);
        }
        if client.wait_readable().await.is_err() || deadline.expired() {
            return false;
        }
        let b = bufs.insert(w.take_buffers());
        let (r, buf) = read_append(client, take(&mut b.cbuf)).await;
        b.cbuf = buf;
        matches!(r, Ok(n) if n > 0) && !deadline.expired()
    }
}
