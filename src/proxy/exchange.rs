//! One request/response exchange on a client connection: route, send the head upstream, relay
//! the request body, read the response head (forwarding 1xx), relay the response body, and
//! decide whether both connections may be kept.
//!
//! Phases, in order (where the policy chain will hook in):
//! 1. request head parsed (by `conn`) → route chosen → *request-header policies*
//! 2. upstream head written, request body relayed → *request-body policies*
//! 3. response head read → *response-header policies* → head written to the client
//! 4. response body relayed → *response-body policies* → access log

use std::io::Write;
use std::mem::take;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::accesslog::Entry;
use crate::http::head::Span;
use crate::http::{parse_response, BodyKind, ChunkedDecoder, ChunkedOutput};
use crate::net::{read_append, with_timeout, write_all, Stream};
use crate::relay::stream::{self, StreamRead};
use crate::upstream::{ConnectError, UpConn};

use super::errors::error_response;
use super::router::{upstream_target, Miss};
use super::state::{Buffers, ConnInfo, Generation, WorkerState};

/// What the connection loop does after an exchange.
pub enum Next {
    KeepAlive,
    Close,
    /// 101 Switching Protocols: the connection becomes a tunnel to this upstream connection;
    /// bytes the upstream sent after its head are in `Buffers::ubuf`.
    Upgrade(UpConn, Duration),
}

/// What the access log records of an exchange.
struct Facts {
    status: u16,
    bytes: u64,
    upstream: Option<SocketAddr>,
}

/// Most interim (1xx) responses accepted before one final response.
const MAX_INTERIM: usize = 32;

pub async fn exchange<S: Stream>(
    client: &mut S,
    b: &mut Buffers,
    info: &ConnInfo,
    g: &Generation,
    w: &WorkerState,
) -> Next {
    let start = Instant::now();
    let mut facts = Facts {
        status: 0,
        bytes: 0,
        upstream: None,
    };
    let next = forward(client, b, info, g, w, &mut facts).await;
    if w.log.enabled() {
        w.log.log(&Entry {
            client: &info.peer_ip,
            method: b.req.method.get(&b.cbuf),
            target: b.req.target.get(&b.cbuf),
            status: facts.status,
            bytes: facts.bytes,
            upstream: facts.upstream,
            duration: start.elapsed(),
        });
    }
    next
}

/// Answers with an error of ringway's own. The connection closes when the request body (if
/// any) was not consumed, since its bytes would be read as the next request.
async fn reply<S: Stream>(
    client: &mut S,
    b: &mut Buffers,
    f: &mut Facts,
    status: u16,
    msg: &str,
    mut close: bool,
) -> Next {
    close |= b.req.body.has_body() || !b.req.keep_alive;
    f.status = status;
    error_response(&mut b.out, status, msg, close);
    let (r, out) = write_all(client, take(&mut b.out)).await;
    b.out = out;
    if close || r.is_err() {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

async fn forward<S: Stream>(
    client: &mut S,
    b: &mut Buffers,
    info: &ConnInfo,
    g: &Generation,
    w: &WorkerState,
    f: &mut Facts,
) -> Next {
    let host = b.req.host.map_or(&b""[..], |h| h.get(&b.cbuf));
    let route_i = match g
        .router
        .find(host, b.req.target.get(&b.cbuf), b.req.method(&b.cbuf))
    {
        Ok(i) => i,
        Err(Miss::NotFound) => return reply(client, b, f, 404, "no route", false).await,
        Err(Miss::MethodNotAllowed) => {
            return reply(client, b, f, 405, "method not allowed", false).await
        }
    };
    let route = g.router.route(route_i);
    let limits = &g.snap.limits;
    if let BodyKind::Length(n) = b.req.body {
        if n > limits.max_body_bytes {
            return reply(client, b, f, 413, "request body too large", true).await;
        }
    }
    let mut body = RequestBody::new(b.req.body);
    build_upstream_head(b, route, info, &g.snap.upstreams[route.upstream].servers[0]);
    if let Err(e) = body.take_buffered(b, limits.max_body_bytes) {
        return reply(client, b, f, e.status(), e.message(), true).await;
    }
    let retryable = b.req.body == BodyKind::None && b.req.is_idempotent(&b.cbuf);
    let timeout = route.response_timeout;
    let mut attempt = 0;
    let mut conn = loop {
        attempt += 1;
        let conn = match g.pools.get(route.upstream, route.connect_timeout).await {
            Ok(c) => c,
            Err(ConnectError::Failed(_, _)) => {
                return reply(client, b, f, 502, "upstream unavailable", false).await
            }
            Err(ConnectError::Timeout(_)) => {
                return reply(client, b, f, 504, "upstream connect timeout", false).await
            }
        };
        f.upstream = Some(conn.addr);
        let mut conn = conn;
        match send_request(client, &mut conn.stream, b, &mut body, info, timeout).await {
            Ok(()) => {}
            Err(e) if e.is_upstream() && conn.reused && retryable && attempt == 1 => continue,
            Err(SendError::Client) => return Next::Close,
            Err(e) => return reply(client, b, f, e.status(), e.message(), true).await,
        }
        match read_final_head(
            client,
            &mut conn.stream,
            b,
            info,
            timeout,
            limits.max_response_head_bytes,
        )
        .await
        {
            Ok(()) => break conn,
            Err(HeadFail::Empty) if conn.reused && retryable && attempt == 1 => continue,
            Err(HeadFail::Client) => return Next::Close,
            Err(e) => return reply(client, b, f, e.status(), e.message(), true).await,
        }
    };
    f.status = b.resp.status;
    if b.resp.status == 101 {
        return upgrade(client, b, conn, f, route.tunnel_idle_timeout).await;
    }
    let timeouts = Timeouts {
        response: timeout,
        stream_idle: route.stream_idle_timeout,
    };
    respond(client, &mut conn, b, w, f, timeouts, body.complete())
        .await
        .map_or(Next::Close, |keep| {
            if keep.upstream {
                g.pools.put(route.upstream, conn);
            }
            if keep.client {
                Next::KeepAlive
            } else {
                Next::Close
            }
        })
}

/// The request head ringway sends upstream, followed by as much body as already arrived.
fn build_upstream_head(
    b: &mut Buffers,
    route: &crate::config::RouteSpec,
    info: &ConnInfo,
    server: &SocketAddr,
) {
    let (buf, req, out) = (&b.cbuf, &b.req, &mut b.out);
    out.clear();
    out.extend_from_slice(req.method.get(buf));
    out.push(b' ');
    let (lead, rest) = upstream_target(route, req.target.get(buf));
    out.extend_from_slice(lead);
    out.extend_from_slice(rest);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (i, h) in req.headers.iter().enumerate() {
        if h.hop {
            continue;
        }
        put_field(out, buf, h.name, h.value);
        if Some(i) == req.forwarded_for {
            out.truncate(out.len() - 2);
            let _ = write!(out, ", {}\r\n", info.peer_ip);
        }
    }
    if req.forwarded_for.is_none() {
        let _ = write!(out, "x-forwarded-for: {}\r\n", info.peer_ip);
    }
    let _ = write!(
        out,
        "x-forwarded-proto: {}\r\nvia: 1.{} ringway\r\n",
        info.proto, req.minor
    );
    if req.host.is_none() {
        let _ = write!(out, "host: {server}\r\n");
    }
    match req.body {
        BodyKind::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        BodyKind::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if let Some(u) = req.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        out.extend_from_slice(u.get(buf));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn put_field(out: &mut Vec<u8>, buf: &[u8], name: Span, value: Span) {
    out.extend_from_slice(name.get(buf));
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.get(buf));
    out.extend_from_slice(b"\r\n");
}

/// Progress of the request body toward the upstream.
struct RequestBody {
    kind: BodyKind,
    remaining: u64,
    decoder: ChunkedDecoder,
}

#[derive(Debug, Clone, Copy)]
enum SendError {
    /// The client went away or broke framing mid-body; nothing to answer.
    Client,
    ClientTimeout,
    BadChunk,
    TooLarge,
    UpstreamIo,
    UpstreamTimeout,
}

impl SendError {
    fn is_upstream(self) -> bool {
        matches!(self, SendError::UpstreamIo)
    }
    fn status(self) -> u16 {
        match self {
            SendError::Client | SendError::BadChunk => 400,
            SendError::ClientTimeout => 408,
            SendError::TooLarge => 413,
            SendError::UpstreamIo => 502,
            SendError::UpstreamTimeout => 504,
        }
    }
    fn message(self) -> &'static str {
        match self {
            SendError::Client | SendError::BadChunk => "malformed request body",
            SendError::ClientTimeout => "request body timeout",
            SendError::TooLarge => "request body too large",
            SendError::UpstreamIo => "upstream closed the connection",
            SendError::UpstreamTimeout => "upstream timeout",
        }
    }
}

impl RequestBody {
    fn new(kind: BodyKind) -> RequestBody {
        let remaining = if let BodyKind::Length(n) = kind { n } else { 0 };
        RequestBody {
            kind,
            remaining,
            decoder: ChunkedDecoder::default(),
        }
    }

    fn complete(&self) -> bool {
        match self.kind {
            BodyKind::Chunked => self.decoder.is_done(),
            _ => self.remaining == 0,
        }
    }

    /// Moves body bytes that arrived with the head into `out`, behind the head.
    fn take_buffered(&mut self, b: &mut Buffers, max: u64) -> Result<(), SendError> {
        b.cpos = b.req.head_len;
        self.consume(b, max)
    }

    /// Consumes client bytes in `cbuf[cpos..]` into `out` (appending), up to the body's end.
    fn consume(&mut self, b: &mut Buffers, max: u64) -> Result<(), SendError> {
        let pending = &b.cbuf[b.cpos..];
        let used = match self.kind {
            BodyKind::Length(_) => {
                let n = (self.remaining as usize).min(pending.len());
                b.out.extend_from_slice(&pending[..n]);
                self.remaining -= n as u64;
                n
            }
            BodyKind::Chunked => {
                let n = self
                    .decoder
                    .decode(pending, ChunkedOutput::Chunked, &mut b.out)
                    .map_err(|_| SendError::BadChunk)?;
                if self.decoder.total > max {
                    return Err(SendError::TooLarge);
                }
                n
            }
            _ => 0,
        };
        b.cpos += used;
        Ok(())
    }
}

/// Writes the head (and buffered body) upstream, then relays the rest of the request body.
async fn send_request<S: Stream>(
    client: &mut S,
    up: &mut TcpStream,
    b: &mut Buffers,
    body: &mut RequestBody,
    info: &ConnInfo,
    timeout: Duration,
) -> Result<(), SendError> {
    upstream_write(up, b, timeout).await?;
    if body.complete() {
        return Ok(());
    }
    if b.req.expect_continue && b.req.minor == 1 {
        // ringway answers the expectation itself once it is ready to take the body.
        let (r, _) = write_all(client, &b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
        r.map_err(|_| SendError::Client)?;
    }
    let head_len = b.req.head_len;
    while !body.complete() {
        // Keep the request head at the front of cbuf (the log and retries read it).
        b.cbuf.truncate(head_len);
        b.cpos = head_len;
        let (r, buf) =
            match with_timeout(info.header_timeout, read_append(client, take(&mut b.cbuf))).await {
                Some(x) => x,
                None => return Err(SendError::ClientTimeout),
            };
        b.cbuf = buf;
        match r {
            Ok(n) if n > 0 => {}
            _ => return Err(SendError::Client),
        }
        b.out.clear();
        body.consume(b, u64::MAX)?;
        upstream_write(up, b, timeout).await?;
    }
    Ok(())
}

async fn upstream_write(
    up: &mut TcpStream,
    b: &mut Buffers,
    timeout: Duration,
) -> Result<(), SendError> {
    match with_timeout(timeout, write_all(up, take(&mut b.out))).await {
        Some((r, out)) => {
            b.out = out;
            r.map_err(|_| SendError::UpstreamIo)
        }
        None => Err(SendError::UpstreamTimeout),
    }
}

#[derive(Debug, Clone, Copy)]
enum HeadFail {
    /// The upstream closed or reset before sending a byte.
    Empty,
    /// Closed after part of a head.
    Cut,
    Timeout,
    Bad(&'static str),
    /// Writing an interim response to the client failed.
    Client,
}

impl HeadFail {
    fn status(self) -> u16 {
        match self {
            HeadFail::Timeout => 504,
            _ => 502,
        }
    }
    fn message(self) -> &'static str {
        match self {
            HeadFail::Empty => "upstream closed the connection",
            HeadFail::Cut => "upstream closed mid-response",
            HeadFail::Timeout => "upstream response timeout",
            HeadFail::Bad(why) => why,
            HeadFail::Client => "client gone",
        }
    }
}

/// Reads response heads until a final one (or 101), forwarding interim 1xx to HTTP/1.1 clients.
async fn read_final_head<S: Stream>(
    client: &mut S,
    up: &mut TcpStream,
    b: &mut Buffers,
    info: &ConnInfo,
    timeout: Duration,
    max_head: usize,
) -> Result<(), HeadFail> {
    let _ = info;
    let is_head = b.req.is_head(&b.cbuf);
    b.ubuf.clear();
    for _ in 0..=MAX_INTERIM {
        read_head(up, b, timeout, max_head, is_head).await?;
        let status = b.resp.status;
        if status >= 200 || status == 101 {
            return Ok(());
        }
        if b.req.minor == 1 {
            build_client_head(b, ClientFraming::None, true);
            let (r, out) = write_all(client, take(&mut b.out)).await;
            b.out = out;
            r.map_err(|_| HeadFail::Client)?;
        }
        b.ubuf.drain(..b.resp.head_len);
    }
    Err(HeadFail::Bad("too many interim responses"))
}

async fn read_head(
    up: &mut TcpStream,
    b: &mut Buffers,
    timeout: Duration,
    max_head: usize,
    is_head: bool,
) -> Result<(), HeadFail> {
    loop {
        if !b.ubuf.is_empty() {
            match parse_response(&b.ubuf, max_head, is_head, &mut b.resp) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(why) => return Err(HeadFail::Bad(why)),
            }
        }
        let had = b.ubuf.len();
        let Some((r, buf)) = with_timeout(timeout, read_append(up, take(&mut b.ubuf))).await else {
            // The cancelled read kept the buffer; this connection is abandoned anyway.
            b.ubuf = Vec::with_capacity(64 * 1024);
            return Err(HeadFail::Timeout);
        };
        b.ubuf = buf;
        match r {
            Ok(n) if n > 0 => {}
            _ if had == 0 => return Err(HeadFail::Empty),
            _ => return Err(HeadFail::Cut),
        }
    }
}

/// How the response body is framed toward the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientFraming {
    None,
    Length(u64),
    Chunked,
    /// Delimited by closing the client connection.
    Close,
}

fn build_client_head(b: &mut Buffers, framing: ClientFraming, keep: bool) {
    let (buf, resp, out) = (&b.ubuf, &b.resp, &mut b.out);
    out.clear();
    let _ = write!(out, "HTTP/1.1 {} ", resp.status);
    out.extend_from_slice(resp.reason.get(buf));
    out.extend_from_slice(b"\r\n");
    for h in &resp.headers {
        if !h.hop {
            put_field(out, buf, h.name, h.value);
        }
    }
    match framing {
        ClientFraming::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        ClientFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        ClientFraming::None => {
            if let Some(n) = resp.declared_length {
                // HEAD and 304 describe the body they would have had.
                let _ = write!(out, "content-length: {n}\r\n");
            }
        }
        ClientFraming::Close => {}
    }
    if resp.status == 101 {
        out.extend_from_slice(b"connection: upgrade\r\n");
    } else if resp.status >= 200 {
        if !keep {
            out.extend_from_slice(b"connection: close\r\n");
        } else if b.req.minor == 0 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

async fn upgrade<S: Stream>(
    client: &mut S,
    b: &mut Buffers,
    conn: UpConn,
    f: &mut Facts,
    idle: Duration,
) -> Next {
    if b.req.upgrade.is_none() {
        return reply(client, b, f, 502, "unexpected 101 from upstream", true).await;
    }
    build_client_head(b, ClientFraming::None, true);
    let (r, out) = write_all(client, take(&mut b.out)).await;
    b.out = out;
    if r.is_err() {
        return Next::Close;
    }
    b.ubuf.drain(..b.resp.head_len);
    Next::Upgrade(conn, idle)
}

/// Per-read limits of a response body: `response` for bodies with a length, `stream_idle`
/// for streams (event streams, chunked or close-delimited bodies) once the head is in.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    response: Duration,
    stream_idle: Duration,
}

/// Which connections survive the exchange.
struct Keep {
    client: bool,
    upstream: bool,
}

/// Writes the final head and relays the response body. `Err` means the client connection
/// broke (or was cut off after a truncated body) and must close.
async fn respond<S: Stream>(
    client: &mut S,
    up: &mut UpConn,
    b: &mut Buffers,
    w: &WorkerState,
    f: &mut Facts,
    timeouts: Timeouts,
    request_done: bool,
) -> Result<Keep, ()> {
    let timeout = timeouts.response;
    let http10 = b.req.minor == 0;
    let framing = match b.resp.body {
        BodyKind::None => ClientFraming::None,
        BodyKind::Length(n) => ClientFraming::Length(n),
        BodyKind::Chunked if http10 => ClientFraming::Close,
        BodyKind::Chunked => ClientFraming::Chunked,
        BodyKind::Close => ClientFraming::Close,
    };
    let keep_client =
        b.req.keep_alive && request_done && framing != ClientFraming::Close && !w.draining.get();
    build_client_head(b, framing, keep_client);
    let mut relay = ResponseBody::new(b.resp.body, http10);
    let start = b.resp.head_len;
    relay.consume(b, start, f)?;
    client_write(client, b, timeout).await?;
    // Streams are relayed read by read (no batching) under the stream idle timeout, watching
    // for the client to leave (see `relay::stream`).
    let streaming = matches!(b.resp.body, BodyKind::Chunked | BodyKind::Close)
        || b.resp.headers.iter().any(|h| {
            h.name.get(&b.ubuf).eq_ignore_ascii_case(b"content-type")
                && stream::is_event_stream(h.value.get(&b.ubuf))
        });
    let (read_timeout, mut watch) = if streaming {
        (timeouts.stream_idle, stream::Watch::new(client))
    } else {
        (timeout, stream::Watch::off())
    };
    while !relay.done {
        b.ubuf.clear();
        let (r, buf) = stream::read_watching(
            client,
            &mut up.stream,
            take(&mut b.ubuf),
            read_timeout,
            &mut watch,
        )
        .await;
        b.ubuf = buf;
        if b.ubuf.capacity() == 0 {
            // The read was abandoned with its buffer; the connection closes anyway.
            b.ubuf = Vec::with_capacity(64 * 1024);
        }
        match r {
            StreamRead::Data(_) => {}
            StreamRead::Idle | StreamRead::ClientGone => return Err(()),
            // Close-delimited bodies end here; any other body was cut off: close the client
            // too, so it sees the truncation instead of a padded or hanging response.
            StreamRead::Eof | StreamRead::Error(_) if b.resp.body == BodyKind::Close => break,
            StreamRead::Eof | StreamRead::Error(_) => return Err(()),
        }
        b.out.clear();
        relay.consume(b, 0, f)?;
        // A stream's writes share its idle limit: a client that reads nothing for that long
        // is as stuck as an upstream that sends nothing.
        client_write(client, b, read_timeout).await?;
    }
    Ok(Keep {
        client: keep_client,
        upstream: b.resp.keep_alive && request_done && relay.clean,
    })
}

async fn client_write<S: Stream>(
    client: &mut S,
    b: &mut Buffers,
    timeout: Duration,
) -> Result<(), ()> {
    if b.out.is_empty() {
        return Ok(());
    }
    match with_timeout(timeout, write_all(client, take(&mut b.out))).await {
        Some((Ok(()), out)) => {
            b.out = out;
            Ok(())
        }
        Some((Err(_), out)) => {
            b.out = out;
            Err(())
        }
        None => Err(()),
    }
}

/// Progress of the response body toward the client.
struct ResponseBody {
    kind: BodyKind,
    remaining: u64,
    decoder: ChunkedDecoder,
    mode: ChunkedOutput,
    done: bool,
    /// No stray bytes followed the body (so the upstream connection can be reused).
    clean: bool,
}

impl ResponseBody {
    fn new(kind: BodyKind, http10: bool) -> ResponseBody {
        let remaining = if let BodyKind::Length(n) = kind { n } else { 0 };
        ResponseBody {
            kind,
            remaining,
            decoder: ChunkedDecoder::default(),
            mode: if http10 {
                ChunkedOutput::Data
            } else {
                ChunkedOutput::Chunked
            },
            done: kind == BodyKind::None,
            clean: true,
        }
    }

    /// Moves response bytes `ubuf[from..]` into `out`.
    fn consume(&mut self, b: &mut Buffers, from: usize, f: &mut Facts) -> Result<(), ()> {
        let input = &b.ubuf[from.min(b.ubuf.len())..];
        let before = b.out.len();
        match self.kind {
            BodyKind::None => self.clean = input.is_empty(),
            BodyKind::Length(_) => {
                let n = (self.remaining as usize).min(input.len());
                b.out.extend_from_slice(&input[..n]);
                self.remaining -= n as u64;
                self.done = self.remaining == 0;
                self.clean = n == input.len();
            }
            BodyKind::Chunked => {
                let n = self
                    .decoder
                    .decode(input, self.mode, &mut b.out)
                    .map_err(|_| ())?;
                self.done = self.decoder.is_done();
                self.clean = n == input.len();
            }
            BodyKind::Close => b.out.extend_from_slice(input),
        }
        f.bytes += (b.out.len() - before) as u64;
        Ok(())
    }
}
