//! The request side of an exchange: body bytes from the client to the upstream, bounded by the
//! body's framing (never past it into a pipelined request) and by `max_body_bytes`.

use std::mem::take;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::http::{BodyKind, ChunkedDecoder, ChunkedOutput};
use crate::net::{grow_if_full, read_append, with_timeout, write_all};

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
}

impl SendError {
    pub(super) fn status(self) -> u16 {
        match self {
            SendError::Client | SendError::BadChunk => 400,
            SendError::ClientTimeout => 408,
            SendError::TooLarge => 413,
            SendError::UpstreamIo => 502,
        }
    }

    pub(super) fn message(self) -> &'static str {
        match self {
            SendError::Client | SendError::BadChunk => "malformed request body",
            SendError::ClientTimeout => "request body timeout",
            SendError::TooLarge => "request body too large",
            SendError::UpstreamIo => "upstream closed the connection",
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

/// Relays the rest of the request body: client reads under `read_timeout`, upstream writes
/// bounded by the socket's TCP_USER_TIMEOUT.
pub(super) async fn upload<C: AsyncReadRent, U: AsyncWriteRent>(
    client: &mut C,
    up: &mut U,
    u: UploadBuf<'_>,
    body: &mut RequestBody,
    read_timeout: Duration,
) -> Result<(), SendError> {
    while !body.complete() {
        u.cbuf.truncate(u.head_len);
        *u.cpos = u.head_len;
        let Some((r, buf)) = with_timeout(read_timeout, read_append(client, take(u.cbuf))).await
        else {
            *u.cbuf = Vec::with_capacity(u.head_len + 4096);
            return Err(SendError::ClientTimeout);
        };
        *u.cbuf = buf;
        match r {
            Ok(n) if n > 0 => grow_if_full(u.cbuf),
            _ => return Err(SendError::Client),
        }
        u.out.clear();
        *u.cpos += body.consume(&u.cbuf[*u.cpos..], u.out)?;
        let (r, out) = write_all(up, take(u.out)).await;
        *u.out = out;
        r.map_err(|_| SendError::UpstreamIo)?;
    }
    Ok(())
}
