//! One request/response exchange on a client connection: route, send the head upstream, relay
//! the request body, read the response head (forwarding 1xx), relay the response body, and
//! decide whether both connections may be kept.
//!
//! Phases, in order (where the policy chain will hook in):
//! 1. request head parsed (by `conn`) → route chosen → *request-header policies*
//! 2. upstream head written, request body relayed → *request-body policies*
//! 3. response head read → *response-header policies* → head written to the client
//! 4. response body relayed → *response-body policies* → access log

use std::cell::Cell;
use std::future::Future;
use std::io::Write;
use std::mem::take;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::time::{Duration, Instant};

use crate::accesslog::Entry;
use crate::config::{RelayMode, RouteSpec};
use crate::http::head::is_forwarded_for;
use crate::http::head::HeaderRef;
use crate::http::BodyKind;
use crate::net::{halves, write_all_within, SendLimit, Stream};
use crate::relay::pipes::PipePool;
use crate::upstream::{ConnectError, UpConn};

use super::errors::error_response_with;
use super::response::{
    build_client_head, read_final_head, respond, ClientFraming, HeadFail, Keep, RespondError,
    Timeouts,
};
use super::router::{upstream_target, Miss};
use super::state::{Buffers, ConnInfo, Generation, WorkerState};
use super::upload::{upload, upstream_write_error, RequestBody, SendError, UploadBuf, UploadPlan};

/// The 502 message for a response body whose framing broke before any of it was sent.
const BAD_BODY: &str = "malformed response body";

/// What the connection loop does after an exchange.
pub enum Next {
    KeepAlive,
    Close,
    /// 101 Switching Protocols: the connection becomes a tunnel to this upstream connection;
    /// bytes the upstream sent after its head are in `Buffers::ubuf`. Carries the route's
    /// tunnel idle timeout, the route's relay mode, and (with the access log on) the line to
    /// write when the tunnel ends.
    Upgrade(UpConn, Duration, RelayMode, Option<Box<TunnelLog>>),
}

/// The access-log line of an upgraded exchange, written when its tunnel ends: a tunnel's line
/// records what it carried and how long it lived, not just its 101.
pub struct TunnelLog {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub upstream: Option<SocketAddr>,
    pub start: Instant,
    /// Bytes of the 101's body already sent (none, normally).
    pub bytes: u64,
}

/// What the access log records of an exchange.
pub(super) struct Facts {
    pub status: u16,
    pub bytes: u64,
    pub upstream: Option<SocketAddr>,
}

pub async fn exchange<S: Stream>(
    client: &mut S,
    b: &mut Buffers,
    info: &ConnInfo,
    g: &Generation,
    w: &WorkerState,
    start: Option<Instant>,
) -> Next {
    let mut facts = Facts {
        status: 0,
        bytes: 0,
        upstream: None,
    };
    let mut next = forward(client, b, info, g, w, &mut facts).await;
    if w.log.enabled() {
        // The head is normally still in `cbuf`; an upload abandoned mid-read (the response
        // finished first) took the buffer with it, and the line then says "-".
        let (method, target) = match b.req.method.try_get(&b.cbuf) {
            Some(m) if b.req.target.try_get(&b.cbuf).is_some() => (m, b.req.path(&b.cbuf)),
            _ => (&b"-"[..], &b"-"[..]),
        };
        match (&mut next, start) {
            (Next::Upgrade(.., log), Some(start)) => {
                *log = Some(Box::new(TunnelLog {
                    method: method.to_vec(),
                    target: target.to_vec(),
                    upstream: facts.upstream,
                    start,
                    bytes: facts.bytes,
                }));
            }
            _ => w.log.log(&Entry {
                client: &info.peer_ip,
                method,
                target,
                status: facts.status,
                bytes: facts.bytes,
                upstream: facts.upstream,
                duration: start.map_or(Duration::ZERO, |s| s.elapsed()),
            }),
        }
    }
    next
}

/// Answers with an error of ringway's own. The connection closes when the request body (if
/// any) was not consumed, since its bytes would be read as the next request.
///
/// Boxed: errors are the rare path, and an inline reply would add its write to the state of
/// every exchange, at each of the many places that can fail.
fn reply<'a, S: Stream>(
    client: &'a mut S,
    lim: SendLimit<'a>,
    b: &'a mut Buffers,
    f: &'a mut Facts,
    status: u16,
    msg: &'a str,
    close: bool,
) -> Pin<Box<dyn Future<Output = Next> + 'a>> {
    reply_with(client, lim, b, f, status, msg, close, String::new())
}

/// [`reply`] with extra header lines.
#[allow(clippy::too_many_arguments)]
fn reply_with<'a, S: Stream>(
    client: &'a mut S,
    lim: SendLimit<'a>,
    b: &'a mut Buffers,
    f: &'a mut Facts,
    status: u16,
    msg: &'a str,
    mut close: bool,
    mut extra: String,
) -> Pin<Box<dyn Future<Output = Next> + 'a>> {
    Box::pin(async move {
        close |= b.req.body.has_body() || !b.req.keep_alive;
        if !close && b.req.minor == 0 {
            // An HTTP/1.0 client keeps the connection only when the answer says so.
            extra.push_str("connection: keep-alive\r\n");
        }
        // The head is consumed even when nothing was forwarded, or it would be served again.
        b.cpos = b.cpos.max(b.req.head_len);
        f.status = status;
        let head = b.req.is_head;
        f.bytes = error_response_with(&mut b.out, status, msg, close, head, &extra) as u64;
        let (r, out) = write_all_within(client, take(&mut b.out), lim).await;
        b.out = out;
        if close || r.is_err() {
            Next::Close
        } else {
            Next::KeepAlive
        }
    })
}

async fn forward<S: Stream>(
    client: &mut S,
    b: &mut Buffers,
    info: &ConnInfo,
    g: &Generation,
    w: &WorkerState,
    f: &mut Facts,
) -> Next {
    let lim = info.send_limit(&w.waits);
    let host = b.req.host.map_or(&b""[..], |h| h.get(&b.cbuf));
    let route_i = match g
        .router
        .find(host, b.req.path(&b.cbuf), b.req.method(&b.cbuf))
    {
        Ok(i) => i,
        Err(Miss::NotFound) => return reply(client, lim, b, f, 404, "no route", false).await,
        Err(Miss::AmbiguousPath) => {
            let why = "encoded slash or backslash in the path would select another route";
            return reply(client, lim, b, f, 400, why, true).await;
        }
        Err(Miss::MethodNotAllowed(i)) => {
            // RFC 9110 §15.5.6: a 405 lists the methods the resource allows.
            let allow = format!("allow: {}\r\n", g.router.allowed(i));
            return reply_with(client, lim, b, f, 405, "method not allowed", false, allow).await;
        }
    };
    let route = g.router.route(route_i);
    if let Some(u) = b.req.upgrade {
        // Only the route's protocols may be switched to: other offers are not passed on (with
        // none left the request goes upstream as an ordinary one), so an `h2c` upgrade cannot
        // open a tunnel past routing and policies.
        if allowed_offers(route, u.get(&b.cbuf)).next().is_none() {
            b.req.upgrade = None;
        }
    }
    let limits = &g.snap.limits;
    if let BodyKind::Length(n) = b.req.body {
        if n > limits.max_body_bytes {
            return reply(client, lim, b, f, 413, "request body too large", true).await;
        }
    }
    let mut body = RequestBody::new(b.req.body, limits.max_body_bytes);
    build_upstream_head(b, route, info, &g.snap.upstreams[route.upstream].servers[0]);
    b.cpos = b.req.head_len;
    match body.consume(&b.cbuf[b.cpos..], &mut b.out) {
        Ok(used) => b.cpos += used,
        Err(e) => return reply(client, lim, b, f, e.status(), e.message(), true).await,
    }
    let retryable = b.req.body == BodyKind::None && b.req.is_idempotent(&b.cbuf);
    let timeout = route.response_timeout;
    let max_head = limits.max_response_head_bytes;
    let pipes = splice_allowed(route).then_some(&w.pipes);
    let timeouts = Timeouts {
        response: route.response_timeout,
        stream_idle: route.stream_idle_timeout,
        client_send: info.send_timeout,
    };
    let mut attempt = 0;
    // Failed connects so far; each moves the request to the upstream's next server.
    let mut refused = 0;
    let servers = g.snap.upstreams[route.upstream].servers.len();
    let mut conn = loop {
        attempt += 1;
        // The retry after a stale pooled connection always connects anew.
        let mut conn = match g
            .pools
            .get(
                route.upstream,
                route.connect_timeout,
                attempt > 1,
                w.waits.now(),
            )
            .await
        {
            Ok(c) => c,
            // Nothing was sent on a failed connect, so any request may try the next server.
            Err(ConnectError::Failed(..) | ConnectError::Timeout(_)) if refused + 1 < servers => {
                refused += 1;
                attempt -= 1;
                continue;
            }
            // The log names the server that failed last.
            Err(ConnectError::Failed(addr, _)) => {
                f.upstream = Some(addr);
                return reply(client, lim, b, f, 502, "upstream unavailable", false).await;
            }
            Err(ConnectError::Timeout(addr)) => {
                f.upstream = Some(addr);
                return reply(client, lim, b, f, 504, "upstream connect timeout", false).await;
            }
            Err(ConnectError::Local(..)) => {
                let why = "gateway out of connection resources";
                return reply(client, lim, b, f, 503, why, false).await;
            }
        };
        f.upstream = Some(conn.addr);
        let retry = conn.reused && retryable && attempt == 1;
        let up_lim = SendLimit {
            waits: &w.waits,
            timeout: route.response_timeout,
        };
        let (r, out) = write_all_within(&mut conn.stream, take(&mut b.out), up_lim).await;
        b.out = out;
        match r {
            Ok(()) => {}
            Err(_) if retry => continue,
            Err(e) => {
                let e = upstream_write_error(e);
                return reply(client, lim, b, f, e.status(), e.message(), true).await;
            }
        }
        if !body.complete() {
            break conn;
        }
        match read_final_head(
            client,
            &mut conn.stream,
            b,
            Some(timeout),
            max_head,
            &w.waits,
            lim,
        )
        .await
        {
            Ok(()) => break conn,
            Err(HeadFail::Empty) if retry => continue,
            // Logged as nginx does: the client closed before the answer.
            Err(HeadFail::Client) => {
                f.status = 499;
                return Next::Close;
            }
            Err(e) => return reply(client, lim, b, f, e.status(), e.message(), true).await,
        }
    };
    if !body.complete() {
        // Boxed: two directions in flight make the largest state; every exchange future (held
        // for a whole event stream) would otherwise be that large.
        return Box::pin(duplex(
            client, conn, b, &mut body, info, g, route, w, f, pipes,
        ))
        .await;
    }
    f.status = b.resp.status;
    if b.resp.status == 101 {
        // Boxed: rare, and it holds the upstream connection by value.
        return Box::pin(upgrade(client, lim, b, conn, f, route)).await;
    }
    match respond(client, &mut conn.stream, b, w, f, timeouts, pipes).await {
        Ok(keep) => finish(keep, true, conn, route, g, w),
        Err(RespondError::BadBody) => reply(client, lim, b, f, 502, BAD_BODY, true).await,
        Err(RespondError::Closed) => Next::Close,
    }
}

/// Pools the upstream connection and keeps the client one when both sides ended cleanly.
fn finish(
    keep: Keep,
    request_done: bool,
    conn: UpConn,
    route: &RouteSpec,
    g: &Generation,
    w: &WorkerState,
) -> Next {
    if keep.upstream && request_done {
        g.pools.put(route.upstream, conn, w.waits.now());
    }
    if keep.client && request_done {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// A request whose body is still arriving: the upload and the response run at once, so an
/// upstream that answers while it reads (an echo, a streaming transform) never deadlocks
/// against a gateway that would only read after writing everything.
#[allow(clippy::too_many_arguments)]
async fn duplex<S: Stream>(
    client: &mut S,
    mut conn: UpConn,
    b: &mut Buffers,
    body: &mut RequestBody,
    info: &ConnInfo,
    g: &Generation,
    route: &RouteSpec,
    w: &WorkerState,
    f: &mut Facts,
    pipes: Option<&PipePool>,
) -> Next {
    let lim = info.send_limit(&w.waits);
    let client_fd = client.socket_fd();
    let (mut cbuf, mut cpos, mut bout) = (take(&mut b.cbuf), b.cpos, take(&mut b.bout));
    let head_len = b.req.head_len;
    let timeout = route.response_timeout;
    let max_head = g.snap.limits.max_response_head_bytes;
    let responded = Cell::new(false);
    // The response timeout counts from the end of the upload, as a wait for an answer: an
    // upstream that answers once it has the whole body must not be cut off while a long
    // upload is still flowing (its progress is bounded by the upload's own read and write
    // limits). So the head wait is watched unarmed, and armed when the body is all sent.
    let head_wait = w.waits.register_unarmed(conn.stream.socket_fd());
    let head_in = Cell::new(false);
    // A 101 to an upgrade request: the switch happens once the whole body is sent (RFC 9110
    // §7.8 upgrades after the complete request), whichever side finishes first.
    let switching = Cell::new(false);
    let upload_done = Cell::new(false);
    let (up_result, down_result) = {
        let (mut cr, mut cw) = halves(client);
        let (mut ur, mut uw) = halves(&mut conn.stream);
        let ubuf = UploadBuf {
            cbuf: &mut cbuf,
            cpos: &mut cpos,
            out: &mut bout,
            head_len,
        };
        let plan = UploadPlan {
            pipes,
            read_timeout: info.header_timeout,
            write: SendLimit {
                waits: &w.waits,
                timeout,
            },
        };
        let mut up = pin!(async {
            let r = upload(&mut cr, &mut uw, ubuf, body, plan).await;
            upload_done.set(r.is_ok());
            r
        });
        let mut down = pin!(async {
            let head = read_final_head(&mut cw, &mut ur, b, None, max_head, &w.waits, lim).await;
            head_in.set(true);
            head_wait.disarm();
            match head {
                Err(HeadFail::Empty | HeadFail::Cut) if head_wait.client_gone() => {
                    f.status = 499;
                    return Err(HeadFail::Client);
                }
                Err(HeadFail::Empty | HeadFail::Cut) if head_wait.expired() => {
                    return Err(HeadFail::Timeout)
                }
                r => r?,
            }
            if b.resp.status == 101 {
                switching.set(b.req.upgrade.is_some());
                return Err(HeadFail::Bad("101 before the request body was complete"));
            }
            f.status = b.resp.status;
            responded.set(true);
            if !upload_done.get() && !b.resp.keep_alive {
                // The upstream answered early and will close: the rest of the body has nowhere
                // to go, so the client is told this connection ends with the answer (RFC 9112
                // §9.6) instead of finding it closed under a pipelined request.
                b.req.keep_alive = false;
            }
            let t = Timeouts {
                response: timeout,
                stream_idle: route.stream_idle_timeout,
                client_send: info.send_timeout,
            };
            respond(&mut cw, &mut ur, b, w, f, t, pipes)
                .await
                .map_err(|e| match e {
                    RespondError::BadBody => {
                        responded.set(false);
                        HeadFail::Bad(BAD_BODY)
                    }
                    RespondError::Closed => HeadFail::Client,
                })
        });
        monoio::select! {
            u = &mut up => match u {
                // An upstream that stopped taking the body and has not answered is a 504 now,
                // not after one more wait for an answer.
                Err(SendError::UpstreamTimeout) if !head_in.get() => (Some(u), None),
                // The upstream may have answered early and closed: let the response finish.
                Ok(()) | Err(SendError::UpstreamIo | SendError::UpstreamTimeout) => {
                    if !head_in.get() {
                        head_wait.arm(timeout);
                        // The upstream may still be reading what the kernel holds of the body.
                        head_wait.watch_queue(timeout);
                        head_wait.watch_client(client_fd);
                    }
                    (Some(u), Some(down.await))
                }
                Err(_) => (Some(u), None),
            },
            d = &mut down => {
                // A switch waits for the body; so does an upstream connection that ended
                // before its answer, since the upload says why: a write that timed out (the
                // upstream stopped taking the body; its socket was shut down for it) is a
                // 504, not the closed connection the head read saw. An upstream that answered
                // early and keeps its connection reads the rest of the body (or it would have
                // said close): the upload goes on, within its own limits, so that both
                // connections stay usable, as HAProxy does.
                let keeps_reading = matches!(d, Ok(Keep { upstream: true, .. }));
                if switching.get() || keeps_reading || matches!(d, Err(HeadFail::Empty | HeadFail::Cut)) {
                    (Some(up.await), Some(d))
                } else {
                    (None, Some(d))
                }
            }
        }
    };
    b.cbuf = cbuf;
    b.cpos = cpos;
    b.bout = bout;
    let request_done = matches!(up_result, Some(Ok(())));
    if switching.get() && request_done {
        f.status = 101;
        return Box::pin(upgrade(client, lim, b, conn, f, route)).await;
    }
    match (up_result, down_result) {
        (_, Some(Ok(keep))) => finish(keep, request_done, conn, route, g, w),
        _ if responded.get() => Next::Close,
        (Some(Err(e @ SendError::Client)), _) => {
            // Nothing to answer; logged as nginx logs a body the client broke off (400).
            f.status = e.status();
            Next::Close
        }
        (Some(Err(e)), None) => reply(client, lim, b, f, e.status(), e.message(), true).await,
        // The upstream stopped taking the body and its socket timed out: no answer could
        // follow, and the timeout is the news (504), not the dead connection it left.
        (Some(Err(e @ SendError::UpstreamTimeout)), Some(Err(HeadFail::Empty | HeadFail::Cut))) => {
            reply(client, lim, b, f, e.status(), e.message(), true).await
        }
        (_, Some(Err(HeadFail::Client))) => Next::Close,
        (_, Some(Err(e))) => reply(client, lim, b, f, e.status(), e.message(), true).await,
        (_, None) => Next::Close,
    }
}

/// The request head ringway sends upstream, followed by as much body as already arrived.
fn build_upstream_head(b: &mut Buffers, route: &RouteSpec, info: &ConnInfo, server: &SocketAddr) {
    let (buf, req, out) = (&b.cbuf, &b.req, &mut b.out);
    out.clear();
    out.extend_from_slice(req.method.get(buf));
    out.push(b' ');
    // RFC 9112 §3.2.4: an absolute-form OPTIONS with an empty path and no query is for the
    // server as a whole, and the last proxy sends it as `*`.
    let server_wide = req.authority.is_some()
        && req.target.start == req.target.end
        && req.method.get(buf) == b"OPTIONS";
    let (lead, rest) = if server_wide {
        (&b"*"[..], &b""[..])
    } else {
        upstream_target(route, req.path(buf))
    };
    out.extend_from_slice(lead);
    out.extend_from_slice(rest);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    copy_fields(out, buf, &req.headers, req.head_len, |_, h| h.hop);
    out.extend_from_slice(b"x-forwarded-for: ");
    if req.forwarded_for.is_some() {
        // All the request's X-Forwarded-For lines, in order, as one list.
        for h in req.headers.iter().filter(|h| is_forwarded_for(buf, h)) {
            let v = h.value.get(buf);
            if !v.is_empty() {
                out.extend_from_slice(v);
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(info.peer_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b"x-forwarded-proto: ");
    out.extend_from_slice(info.proto.as_bytes());
    out.extend_from_slice(if req.minor == 0 {
        b"\r\nvia: 1.0 ringway\r\n"
    } else {
        b"\r\nvia: 1.1 ringway\r\n"
    });
    match (req.authority, req.host) {
        (Some(authority), _) => {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(authority.get(buf));
            out.extend_from_slice(b"\r\n");
        }
        (None, None) => {
            let _ = write!(out, "host: {server}\r\n");
        }
        (None, Some(_)) => {}
    }
    match req.body {
        BodyKind::Length(n) => {
            put_length(out, n);
        }
        BodyKind::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ if req.zero_length => out.extend_from_slice(b"content-length: 0\r\n"),
        _ => {}
    }
    if let Some(u) = req.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        // The offered tokens the route allows, in the client's order (versions kept).
        for (i, token) in allowed_offers(route, u.get(buf)).enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(token);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

pub(super) fn push_num(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

pub(super) fn put_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    push_num(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Copies forwarded header lines verbatim, one run of consecutive fields at a time (a field's
/// line ends where the next begins; the last ends at the head's final CRLF). `skip` picks the
/// fields left out: hop-by-hop ones, or those the caller rewrites.
pub(super) fn copy_fields(
    out: &mut Vec<u8>,
    buf: &[u8],
    headers: &[HeaderRef],
    head_len: usize,
    skip: impl Fn(usize, &HeaderRef) -> bool,
) {
    let mut run: Option<usize> = None;
    for (i, h) in headers.iter().enumerate() {
        let start = h.name.start as usize;
        match (skip(i, h), run) {
            (true, Some(from)) => {
                out.extend_from_slice(&buf[from..start]);
                run = None;
            }
            (false, None) => run = Some(start),
            _ => {}
        }
    }
    if let Some(from) = run {
        out.extend_from_slice(&buf[from..head_len - 2]);
    }
}

/// Progress of the request body toward the upstream.
async fn upgrade<'a, S: Stream>(
    client: &'a mut S,
    lim: SendLimit<'a>,
    b: &'a mut Buffers,
    conn: UpConn,
    f: &mut Facts,
    route: &RouteSpec,
) -> Next {
    if b.req.upgrade.is_none() {
        return reply(client, lim, b, f, 502, "unexpected 101 from upstream", true).await;
    }
    // RFC 9110 §15.2.2: a 101 names the protocol it switches to, one the client offered (and
    // the route allows: no other offer was passed on).
    let Some(chosen) = switched_to(b) else {
        return reply(
            client,
            lim,
            b,
            f,
            502,
            "101 from upstream names no protocol",
            true,
        )
        .await;
    };
    let offered = b.req.upgrade.map_or(&b""[..], |u| u.get(&b.cbuf));
    if !allowed_offers(route, offered).any(|o| protocol(o).eq_ignore_ascii_case(chosen)) {
        let why = "101 from upstream switches to a protocol the client did not offer";
        return reply(client, lim, b, f, 502, why, true).await;
    }
    build_client_head(b, ClientFraming::None, true);
    let (r, out) = write_all_within(client, take(&mut b.out), lim).await;
    b.out = out;
    if r.is_err() {
        return Next::Close;
    }
    b.ubuf.drain(..b.resp.head_len);
    // A tunnel's bytes are not read by any policy yet: the route's relay mode applies as is.
    Next::Upgrade(conn, route.tunnel_idle_timeout, route.relay, None)
}

/// The tokens of an `Upgrade` offer the route may switch to (`websocket`, `websocket/13`), in
/// the client's order.
fn allowed_offers<'a>(route: &'a RouteSpec, offer: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    offer
        .split(|&c| c == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
        .filter(|t| {
            let p = protocol(t);
            route
                .upgrades
                .iter()
                .any(|u| p.eq_ignore_ascii_case(u.as_bytes()))
        })
}

/// An `Upgrade` token's protocol name (its version after `/` dropped).
fn protocol(token: &[u8]) -> &[u8] {
    token.split(|&c| c == b'/').next().unwrap_or(token)
}

/// The protocol a response's `Upgrade` field names first, if any.
fn switched_to(b: &Buffers) -> Option<&[u8]> {
    let h = b
        .resp
        .headers
        .iter()
        .find(|h| h.name.get(&b.ubuf).eq_ignore_ascii_case(b"upgrade"))?;
    let value = h.value.get(&b.ubuf);
    let first = value
        .split(|&c| c == b',')
        .map(|t| t.trim_ascii())
        .find(|t| !t.is_empty())?;
    Some(protocol(first))
}

/// Whether a route's bodies may bypass user space. `auto` splices because no policy reads
/// bodies yet; the policy chain will answer here once body policies exist.
fn splice_allowed(route: &RouteSpec) -> bool {
    route.relay != RelayMode::Copy
}
