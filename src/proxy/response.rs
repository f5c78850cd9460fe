//! The response side of an exchange: response heads (with interim 1xx forwarded), the head
//! written to the client, and the response body relayed under the route's read timeout.

use std::mem::take;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::http::date::push_date_line;
use crate::http::{
    parse_response, push_size_line, BodyKind, ChunkedDecoder, ChunkedOutput, LAST_CHUNK,
};
use crate::net::{grow_if_full, read_append, write_all_within, AsStream, SendLimit, Stream};
use crate::relay::pipes::PipePool;
use crate::relay::splice::{self, Deadlines, Fail};
use crate::relay::stream::{self, StreamRead};

use super::exchange::{copy_fields, push_num, put_length, Facts};
use super::state::{Buffers, WorkerState, BUF_START};
use super::upload::SPLICE_MIN;
use crate::deadlines::SocketDeadlines;

/// Chunk data shorter than this is copied with its framing: spliced chunk by chunk, 16 KiB
/// chunks cost more than copying them in 64 KiB reads; 64 KiB and up, splice wins
/// (benches/body/README.md, "Thresholds and chunked bodies").
const CHUNK_SPLICE_MIN: u64 = 64 * 1024;

/// Most interim (1xx) responses accepted before one final response.
const MAX_INTERIM: usize = 32;

#[derive(Debug, Clone, Copy)]
pub(super) enum HeadFail {
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
    pub(super) fn status(self) -> u16 {
        match self {
            HeadFail::Timeout => 504,
            _ => 502,
        }
    }
    pub(super) fn message(self) -> &'static str {
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
/// `timeout` limits each read; `None` leaves the limit to the caller, who holds a deadline on
/// the upstream socket and maps the EOF its expiry causes (`Empty` or `Cut`) to a timeout.
pub(super) async fn read_final_head<C, U>(
    client: &mut C,
    up: &mut U,
    b: &mut Buffers,
    timeout: Option<Duration>,
    max_head: usize,
    deadlines: &SocketDeadlines,
    lim: SendLimit<'_>,
) -> Result<(), HeadFail>
where
    C: AsyncWriteRent + AsStream,
    U: AsyncReadRent + AsStream,
{
    let is_head = b.req.is_head;
    b.ubuf.clear();
    let client_fd = client.as_stream().socket_fd();
    for _ in 0..=MAX_INTERIM {
        read_head(up, b, (timeout, client_fd), max_head, is_head, deadlines).await?;
        let status = b.resp.status;
        if status >= 200 || status == 101 {
            return Ok(());
        }
        if b.req.minor == 1 {
            build_client_head(b, ClientFraming::None, true);
            let (r, out) = write_all_within(client, take(&mut b.out), lim).await;
            b.out = out;
            r.map_err(|_| HeadFail::Client)?;
        }
        b.ubuf.drain(..b.resp.head_len);
    }
    Err(HeadFail::Bad("too many interim responses"))
}

/// Reads until a complete response head is in `ubuf`. The per-read timeout is a registered
/// deadline, not a timer: an expired deadline shuts the socket's read side, the read returns,
/// and the connection is dropped as timed out.
async fn read_head<U: AsyncReadRent + AsStream>(
    up: &mut U,
    b: &mut Buffers,
    (timeout, client_fd): (Option<Duration>, RawFd),
    max_head: usize,
    is_head: bool,
    deadlines: &SocketDeadlines,
) -> Result<(), HeadFail> {
    // A body larger than a peer's receive buffer may still sit in the kernel's send queue
    // when its answer is awaited; smaller ones are in the upstream's kernel already.
    let big_body = matches!(b.req.body, BodyKind::Length(n) if n > 64 * 1024);
    loop {
        if !b.ubuf.is_empty() {
            match parse_response(&b.ubuf, max_head, is_head, &mut b.resp) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(why) => return Err(HeadFail::Bad(why)),
            }
        }
        let had = b.ubuf.len();
        let deadline = timeout.map(|t| {
            let d = deadlines.register_exact(up.as_stream().socket_fd(), t);
            d.watch_client(client_fd);
            if big_body {
                // The upstream may still be reading the body the kernel holds.
                d.watch_queue(t);
            }
            d
        });
        let (r, buf) = read_append(up, take(&mut b.ubuf)).await;
        b.ubuf = buf;
        if let Some(d) = deadline.filter(|d| d.expired()) {
            return Err(if d.client_gone() {
                HeadFail::Client
            } else {
                HeadFail::Timeout
            });
        }
        match r {
            Ok(n) if n > 0 => {}
            // The kernel gave up on an upstream that stopped acknowledging.
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(HeadFail::Timeout),
            _ if had == 0 => return Err(HeadFail::Empty),
            _ => return Err(HeadFail::Cut),
        }
    }
}

/// How the response body is framed toward the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientFraming {
    None,
    Length(u64),
    Chunked,
    /// Delimited by closing the client connection.
    Close,
}

pub(super) fn build_client_head(b: &mut Buffers, framing: ClientFraming, keep: bool) {
    let (buf, resp, out) = (&b.ubuf, &b.resp, &mut b.out);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    push_num(out, resp.status as u64);
    out.push(b' ');
    out.extend_from_slice(resp.reason.get(buf));
    out.extend_from_slice(b"\r\n");
    copy_fields(out, buf, &resp.headers, resp.head_len, |_, h| h.hop);
    match framing {
        ClientFraming::Length(n) => {
            put_length(out, n);
        }
        ClientFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        ClientFraming::None => {
            // HEAD and 304 describe the body they would have had; 1xx and 204 must not carry
            // Content-Length at all (RFC 9110 §8.6).
            let may_describe = resp.status >= 200 && resp.status != 204;
            if let Some(n) = resp.declared_length.filter(|_| may_describe) {
                put_length(out, n);
            }
        }
        ClientFraming::Close => {}
    }
    // RFC 9110 §6.6.1: a final response forwarded without a Date gets one.
    if resp.status >= 200 && !resp.has_date {
        push_date_line(out);
    }
    // RFC 9110 §7.6.3: a proxy adds itself to Via in both directions, with the version of the
    // message it received.
    out.extend_from_slice(if resp.minor == 0 {
        b"via: 1.0 ringway\r\n"
    } else {
        b"via: 1.1 ringway\r\n"
    });
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

/// Per-read limits of a response body: `response` for bodies with a length, `stream_idle`
/// for streams (event streams, chunked or close-delimited bodies) once the head is in.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub response: Duration,
    pub stream_idle: Duration,
    /// The client's send timeout: how long a client may take nothing (a splice relay's wait
    /// for the client; copied writes go through `SendLimit`).
    pub client_send: Duration,
}

/// Which connections may survive the exchange, as far as the response is concerned (the
/// caller also requires the request body to have been relayed completely).
pub(super) struct Keep {
    pub client: bool,
    pub upstream: bool,
}

/// Why a response could not be relayed to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RespondError {
    /// The body's framing was malformed before anything reached the client: answer 502.
    BadBody,
    /// The client connection broke, or was cut off after a truncated body: close it.
    Closed,
}

/// Writes the final head and relays the response body.
pub(super) async fn respond<C, U>(
    client: &mut C,
    up: &mut U,
    b: &mut Buffers,
    w: &WorkerState,
    f: &mut Facts,
    t: Timeouts,
    pipes: Option<&PipePool>,
) -> Result<Keep, RespondError>
where
    C: AsyncWriteRent + AsStream,
    U: AsyncReadRent + AsStream,
{
    let http10 = b.req.minor == 0;
    let framing = match b.resp.body {
        BodyKind::None => ClientFraming::None,
        BodyKind::Length(n) => ClientFraming::Length(n),
        BodyKind::Chunked if http10 => ClientFraming::Close,
        BodyKind::Chunked => ClientFraming::Chunked,
        // A body delimited by the upstream's close goes to an HTTP/1.1 client chunked (as
        // nginx does): a reset or error before the upstream's clean close then reaches the
        // client as a body without its last chunk, visibly cut off (RFC 9112 §8), instead of
        // a close that looks like the end; and the client connection can be kept.
        BodyKind::Close if http10 => ClientFraming::Close,
        BodyKind::Close => ClientFraming::Chunked,
    };
    // Optimistic while a body may still be uploading: if the upload fails the connection closes
    // after this response anyway, which is legal without a `Connection: close`.
    let keep_client = b.req.keep_alive && framing != ClientFraming::Close && !w.draining.get();
    build_client_head(b, framing, keep_client);
    let lim = SendLimit {
        waits: &w.waits,
        timeout: t.client_send,
    };
    let mut relay = ResponseBody::new(b.resp.body, http10);
    let start = b.resp.head_len;
    // Nothing has reached the client yet, so a malformed start of the body is a 502.
    relay
        .consume(b, start, f)
        .map_err(|()| RespondError::BadBody)?;
    client_write(client, b, lim)
        .await
        .map_err(|()| RespondError::Closed)?;
    if !relay.done {
        // Boxed: the rest of a body needs timers and relays whose state would otherwise make
        // every exchange future large (and 128-byte aligned), though most bodies are done here.
        Box::pin(relay_rest(client, up, b, f, (t, lim), pipes, &mut relay))
            .await
            .map_err(|()| RespondError::Closed)?;
    }
    Ok(Keep {
        client: keep_client,
        upstream: b.resp.keep_alive && relay.clean,
    })
}

/// Relays the part of the response body that did not come with the head.
async fn relay_rest<C, U>(
    client: &mut C,
    up: &mut U,
    b: &mut Buffers,
    f: &mut Facts,
    (t, lim): (Timeouts, SendLimit<'_>),
    pipes: Option<&PipePool>,
    relay: &mut ResponseBody,
) -> Result<(), ()>
where
    C: AsyncWriteRent + AsStream,
    U: AsyncReadRent + AsStream,
{
    // Streams are relayed read by read (no batching) under the stream idle timeout, watching
    // for the client to leave (see `relay::stream`).
    let event_stream = is_event_stream(b);
    let streaming = matches!(b.resp.body, BodyKind::Chunked | BodyKind::Close) || event_stream;
    let timeout = if streaming { t.stream_idle } else { t.response };
    // Copied reads of a body with a length watch the client through their deadline instead
    // (`read_within`).
    let mut watch = stream::Watch::new(client.as_stream());
    // Event streams idle between events from the start; other streams once a wait was long.
    let mut quiet = event_stream;
    while !relay.done {
        if let Some(pipes) = pipes {
            let limits = Deadlines {
                read: timeout,
                write: t.client_send,
                // The client is watched while the relay waits for the upstream.
                watch_dest: watch.is_on(),
            };
            if splice_body(client, up, relay, pipes, f, limits).await? {
                continue;
            }
        }
        b.ubuf.clear();
        if quiet {
            release_for_wait(b);
        }
        let waited = Instant::now();
        let (r, buf) = if streaming {
            let buf = take(&mut b.ubuf);
            stream::read_watching(client.as_stream(), up, buf, timeout, &mut watch, quiet).await
        } else {
            let client_fd = client.as_stream().socket_fd();
            read_within(up, take(&mut b.ubuf), (timeout, client_fd), lim.waits).await
        };
        quiet = streaming && (event_stream || waited.elapsed() > QUIET_AFTER);
        b.ubuf = buf;
        if b.ubuf.capacity() == 0 {
            // The read was abandoned with its buffer; the connection closes anyway.
            b.ubuf = Vec::with_capacity(BUF_START);
        }
        match r {
            StreamRead::Data(_) => grow_if_full(&mut b.ubuf),
            StreamRead::Idle | StreamRead::ClientGone => return Err(()),
            // Close-delimited bodies end at a clean close; any other end cuts the body off:
            // close the client too, so it sees the truncation instead of a padded or hanging
            // response.
            StreamRead::Eof if b.resp.body == BodyKind::Close => break,
            StreamRead::Eof | StreamRead::Error(_) => return Err(()),
        }
        b.out.clear();
        relay.consume(b, 0, f)?;
        client_write(client, b, lim).await?;
    }
    if relay.kind == BodyKind::Close && relay.mode == ChunkedOutput::Chunked {
        b.out.clear();
        b.out.extend_from_slice(LAST_CHUNK);
        f.bytes += LAST_CHUNK.len() as u64;
        client_write(client, b, lim).await?;
    }
    Ok(())
}

/// One read of a body with a length, within `timeout`, ending early if the client it is for
/// goes away: both through a registered deadline, which the sweep looks at only when the read
/// outlives a tick (a body that flows costs no timer and no readiness wait on the client).
async fn read_within<U: AsyncReadRent + AsStream>(
    up: &mut U,
    buf: Vec<u8>,
    (timeout, client_fd): (Duration, RawFd),
    waits: &SocketDeadlines,
) -> (StreamRead, Vec<u8>) {
    let d = waits.register_exact(up.as_stream().socket_fd(), timeout);
    d.watch_client(client_fd);
    let (r, buf) = read_append(up, buf).await;
    let read = match r {
        _ if d.client_gone() => StreamRead::ClientGone,
        _ if d.expired() => StreamRead::Idle,
        Ok(0) => StreamRead::Eof,
        Ok(n) => StreamRead::Data(n),
        Err(e) => StreamRead::Error(e),
    };
    (read, buf)
}

/// True when the response head says `Content-Type: text/event-stream`.
fn is_event_stream(b: &Buffers) -> bool {
    b.resp.headers.iter().any(|h| {
        h.name.get(&b.ubuf).eq_ignore_ascii_case(b"content-type")
            && stream::is_event_stream(h.value.get(&b.ubuf))
    })
}

/// A stream whose last upstream wait took longer than this is expected to idle again, so it
/// waits without buffers (see `release_for_wait`).
const QUIET_AFTER: Duration = Duration::from_secs(1);

/// Frees what an idle stream does not need while it waits (the read buffer is freed by
/// `read_watching`): `out` is empty between events, and `cbuf` only has to keep the request
/// head and any pipelined bytes. Thousands of idle event streams then cost their sockets, task
/// and heads, not ≥ 12 KiB of buffers each; an event allocates again (cheap next to its I/O).
fn release_for_wait(b: &mut Buffers) {
    b.out = Vec::new();
    b.cbuf.shrink_to_fit();
}

/// Writes `out` to the client, failing when the client takes nothing for `lim`.
async fn client_write<C: AsyncWriteRent + AsStream>(
    client: &mut C,
    b: &mut Buffers,
    lim: SendLimit<'_>,
) -> Result<(), ()> {
    if b.out.is_empty() {
        return Ok(());
    }
    let (r, out) = write_all_within(client, take(&mut b.out), lim).await;
    b.out = out;
    r.map_err(|_| ())
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
            BodyKind::Close if input.is_empty() => {}
            BodyKind::Close if self.mode == ChunkedOutput::Chunked => {
                push_size_line(&mut b.out, input.len() as u64);
                b.out.extend_from_slice(input);
                b.out.extend_from_slice(b"\r\n");
            }
            BodyKind::Close => b.out.extend_from_slice(input),
        }
        f.bytes += (b.out.len() - before) as u64;
        Ok(())
    }
}

/// Splices what it can of the response body to the client: the rest of a Content-Length body,
/// or the rest of the current chunk's data (its size line was already written). Returns
/// whether it moved anything. `Err` closes the client: a cut-off body must not look complete.
async fn splice_body<C: AsStream, U: AsStream>(
    client: &C,
    up: &U,
    relay: &mut ResponseBody,
    pipes: &PipePool,
    f: &mut Facts,
    t: Deadlines,
) -> Result<bool, ()> {
    let len = match relay.kind {
        BodyKind::Length(_) if relay.remaining >= SPLICE_MIN => relay.remaining,
        BodyKind::Chunked if relay.decoder.data_remaining() >= CHUNK_SPLICE_MIN => {
            relay.decoder.data_remaining()
        }
        _ => return Ok(false),
    };
    let out = splice::relay(pipes, up.as_stream(), client.as_stream(), len, t).await;
    f.bytes += out.delivered;
    if relay.kind == BodyKind::Chunked {
        relay.decoder.skip_data(out.delivered);
    } else {
        relay.remaining -= out.delivered;
        relay.done = relay.remaining == 0;
    }
    match out.result {
        Ok(()) => Ok(true),
        Err(Fail::Unsupported) => Ok(false),
        Err(_) => Err(()),
    }
}
