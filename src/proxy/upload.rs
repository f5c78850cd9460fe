//! The request side of an exchange: body bytes from the client to the upstream, bounded by the
//! body's framing (never past it into a pipelined request) and by `max_body_bytes`.

use std::mem::take;
use std::time::Duration;

use monoio::io::{AsyncWriteRent, CancelableAsyncReadRent};

use crate::http::{BodyKind, ChunkedDecoder, ChunkedOutput};
use crate::net::{grow_if_full, read_append_timeout, write_all_within, AsStream, Read, SendLimit};
use crate::relay::pipes::PipePool;
use crate::relay::splice::{self, Deadlines, Fail};

/// Bodies shorter than this are copied: below it a pipe costs more syscalls than the copy it
/// saves (HAProxy uses the same 4 KiB floor; see benches/body/README.md).
pub(super) const SPLICE_MIN: u64 = 4096;

/// Progress of the request body toward the upstream.
pub(super) struct RequestBody {
    kind: BodyKind,
    remaining: u64,
    decoder: ChunkedDecoder,
    max: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SendError {
    /// The client went away mid-body; nothing to answer.
    Client,
    ClientTimeout,
    BadChunk,
    TooLarge,
    UpstreamIo,
    UpstreamTimeout,
}

/// A failed write to the upstream: a timeout when the upstream took nothing for the response
/// timeout — it closed nothing (504, as nginx and HAProxy answer) — else a broken connection
/// (502).
pub(super) fn upstream_write_error(e: std::io::Error) -> SendError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        SendError::UpstreamTimeout
    } else {
        SendError::UpstreamIo
    }
}

impl SendError {
    pub(super) fn status(self) -> u16 {
        match self {
            SendError::Client | SendError::BadChunk => 400,
            SendError::ClientTimeout => 408,
            SendError::TooLarge => 413,
            SendError::UpstreamIo => 502,
            SendError::UpstreamTimeout => 504,
        }
    }

    pub(super) fn message(self) -> &'static str {
        match self {
            SendError::Client | SendError::BadChunk => "malformed request body",
            SendError::ClientTimeout => "request body timeout",
            SendError::TooLarge => "request body too large",
            SendError::UpstreamIo => "upstream closed the connection",
            SendError::UpstreamTimeout => "upstream stopped reading the request body",
        }
    }
}

impl RequestBody {
    pub(super) fn new(kind: BodyKind, max: u64) -> RequestBody {
        let remaining = if let BodyKind::Length(n) = kind { n } else { 0 };
        RequestBody {
            kind,
            remaining,
            decoder: ChunkedDecoder::default(),
            max,
        }
    }

    pub(super) fn complete(&self) -> bool {
        match self.kind {
            BodyKind::Chunked => self.decoder.is_done(),
            _ => self.remaining == 0,
        }
    }

    /// Moves body bytes from `input` into `out` (appending, re-framing chunked bodies), up to
    /// the body's end. Returns how many input bytes were used.
    pub(super) fn consume(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, SendError> {
        match self.kind {
            BodyKind::Length(_) => {
                let n = (self.remaining as usize).min(input.len());
                out.extend_from_slice(&input[..n]);
                self.remaining -= n as u64;
                Ok(n)
            }
            BodyKind::Chunked => {
                let n = self
                    .decoder
                    .decode(input, ChunkedOutput::Chunked, out)
                    .map_err(|_| SendError::BadChunk)?;
                if self.decoder.total > self.max {
                    return Err(SendError::TooLarge);
                }
                Ok(n)
            }
            _ => Ok(0),
        }
    }
}

/// The client-side buffer of the upload: the request head stays at `cbuf[..head_len]` (the
/// access log reads it); body bytes pass through behind it, and `cpos` ends up just past the
/// body, where a pipelined request may start.
pub(super) struct UploadBuf<'a> {
    pub cbuf: &'a mut Vec<u8>,
    pub cpos: &'a mut usize,
    pub out: &'a mut Vec<u8>,
    pub head_len: usize,
}

/// How the body may travel: `pipes` when it may bypass user space (splice), the timeout for
/// client reads, and the limit on upstream writes.
pub(super) struct UploadPlan<'a> {
    pub pipes: Option<&'a PipePool>,
    pub read_timeout: Duration,
    pub write: SendLimit<'a>,
}

/// Relays the rest of the request body: spliced when the plan allows and it pays, else copied
/// (client reads under the read timeout, upstream writes under the write limit).
pub(super) async fn upload<C, U>(
    client: &mut C,
    up: &mut U,
    u: UploadBuf<'_>,
    body: &mut RequestBody,
    plan: UploadPlan<'_>,
) -> Result<(), SendError>
where
    C: CancelableAsyncReadRent + AsStream,
    U: AsyncWriteRent + AsStream,
{
    if let Some(pipes) = plan.pipes {
        splice_rest(client, up, body, pipes, &plan).await?;
    }
    let read_timeout = plan.read_timeout;
    while !body.complete() {
        u.cbuf.truncate(u.head_len);
        *u.cpos = u.head_len;
        // Cancelled rather than dropped on timeout, so the buffer (and the request head the
        // access log reads from it) comes back.
        let (r, buf) = read_append_timeout(client, take(u.cbuf), read_timeout).await;
        *u.cbuf = buf;
        match r {
            Ok(Read::Data(_)) => grow_if_full(u.cbuf),
            Ok(Read::Timeout) => return Err(SendError::ClientTimeout),
            Ok(Read::Eof) | Err(_) => return Err(SendError::Client),
        }
        u.out.clear();
        *u.cpos += body.consume(&u.cbuf[*u.cpos..], u.out)?;
        let (r, out) = write_all_within(up, take(u.out), plan.write).await;
        *u.out = out;
        r.map_err(upstream_write_error)?;
    }
    Ok(())
}

/// Splices the rest of a Content-Length body upstream (the part that came with the head was
/// already written). Leaves `body` as it is when splice is refused, so the copy loop takes over.
async fn splice_rest<C: AsStream, U: AsStream>(
    client: &C,
    up: &U,
    body: &mut RequestBody,
    pipes: &PipePool,
    plan: &UploadPlan<'_>,
) -> Result<(), SendError> {
    if body.kind == BodyKind::Chunked || body.remaining < SPLICE_MIN {
        return Ok(());
    }
    let t = Deadlines {
        read: plan.read_timeout,
        write: plan.write.timeout,
        watch_dest: false,
    };
    let out = splice::relay(pipes, client.as_stream(), up.as_stream(), body.remaining, t).await;
    body.remaining -= out.delivered;
    match out.result {
        Ok(()) | Err(Fail::Unsupported) => Ok(()),
        Err(Fail::SourceTimeout) => Err(SendError::ClientTimeout),
        Err(Fail::DestTimeout) => Err(SendError::UpstreamTimeout),
        Err(Fail::DestError) => Err(SendError::UpstreamIo),
        Err(_) => Err(SendError::Client),
    }
}
