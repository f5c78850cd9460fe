//! Per-connection I/O: one read buffer (with leftovers for pipelining), one
//! output buffer (responses batch there), and request-body decoding.
//!
//! monoio reads replace a buffer's contents from offset 0, so appends go
//! through `slice_mut(len..)`; a full buffer would read Ok(0) and look like
//! EOF, which is why `make_room` always leaves spare capacity.

use std::io;

use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::request::{self, HeadError, RequestHead};

/// Initial read buffer: one typical head plus a small body fits.
const READ_BUF: usize = 16 * 1024;
/// Output is written once it reaches this size (bodies stream in bounded writes).
pub const OUT_BUF: usize = 64 * 1024;
/// A chunk-size or trailer line longer than this is garbage.
const MAX_LINE: usize = 8 * 1024;

/// Where a request body's decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyState {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Done,
}

impl BodyState {
    pub fn for_framing(framing: request::BodyFraming) -> Self {
        match framing {
            request::BodyFraming::None => BodyState::Done,
            request::BodyFraming::Length(n) => BodyState::Length(n),
            request::BodyFraming::Chunked => BodyState::ChunkSize,
        }
    }
}

pub struct ConnIo {
    stream: TcpStream,
    /// `rbuf[pos..]` is received but not yet consumed.
    rbuf: Vec<u8>,
    pos: usize,
    /// Pending output; flushed before every read so a client never waits on us.
    pub out: Vec<u8>,
}

impl ConnIo {
    pub fn new(stream: TcpStream) -> Self {
        ConnIo {
            stream,
            rbuf: Vec::with_capacity(READ_BUF),
            pos: 0,
            out: Vec::with_capacity(4096),
        }
    }

    pub fn avail(&self) -> &[u8] {
        &self.rbuf[self.pos..]
    }

    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.rbuf.len());
        if self.pos == self.rbuf.len() {
            self.rbuf.clear();
            self.pos = 0;
        }
    }

    /// Appends the first `n` unconsumed bytes to the output (used by `/headers`).
    pub fn copy_to_out(&mut self, n: usize) {
        self.out
            .extend_from_slice(&self.rbuf[self.pos..self.pos + n]);
    }

    /// Writes all pending output.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.out);
        let (res, mut buf) = self.stream.write_all(buf).await;
        buf.clear();
        self.out = buf;
        res.map(|_| ())
    }

    /// Flushes once the output is big enough that batching stops paying.
    pub async fn maybe_flush(&mut self) -> io::Result<()> {
        if self.out.len() >= OUT_BUF {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends FIN after the last response so the client sees a clean close.
    pub async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }

    /// Flushes, then reads more bytes after the unconsumed ones. Ok(0) is EOF.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.flush().await?;
        self.make_room();
        let buf = std::mem::take(&mut self.rbuf);
        let len = buf.len();
        let (res, slice): (_, SliceMut<Vec<u8>>) = self.stream.read(buf.slice_mut(len..)).await;
        self.rbuf = slice.into_inner();
        res
    }

    fn make_room(&mut self) {
        if self.pos > 0 {
            self.rbuf.drain(..self.pos);
            self.pos = 0;
        }
        if self.rbuf.len() == self.rbuf.capacity() {
            self.rbuf.reserve(self.rbuf.capacity().max(READ_BUF));
        }
    }

    /// Fills until at least one unconsumed byte exists; EOF here is an error.
    async fn ensure_some(&mut self) -> io::Result<()> {
        while self.avail().is_empty() {
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// Next request head. `Ok(None)`: the client closed between requests.
    pub async fn read_head(&mut self) -> io::Result<Option<Result<RequestHead, HeadError>>> {
        loop {
            if !self.avail().is_empty() {
                match request::parse(self.avail()) {
                    Ok(Some(head)) => return Ok(Some(Ok(head))),
                    Err(e) => return Ok(Some(Err(e))),
                    Ok(None) => {}
                }
            }
            if self.fill().await? == 0 {
                if self.avail().is_empty() {
                    return Ok(None);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// A CRLF-terminated line at the read position: (content length, length with terminator).
    async fn line(&mut self) -> io::Result<(usize, usize)> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', self.avail()) {
                let content = if i > 0 && self.avail()[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                return Ok((content, i + 1));
            }
            if self.avail().len() > MAX_LINE {
                return Err(invalid("chunk line too long"));
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Makes the next piece of body available: returns n > 0 with the piece at
    /// `avail()[..n]` (the caller consumes it), or 0 once the body is complete.
    pub async fn body_piece(&mut self, state: &mut BodyState) -> io::Result<usize> {
        loop {
            match *state {
                BodyState::Done => return Ok(0),
                BodyState::Length(0) => *state = BodyState::Done,
                BodyState::Length(left) => {
                    let n = self.take_data(left).await?;
                    *state = BodyState::Length(left - n as u64);
                    return Ok(n);
                }
                BodyState::ChunkData(left) => {
                    let n = self.take_data(left).await?;
                    let rest = left - n as u64;
                    *state = if rest == 0 {
                        BodyState::ChunkDataEnd
                    } else {
                        BodyState::ChunkData(rest)
                    };
                    return Ok(n);
                }
                BodyState::ChunkSize => *state = self.chunk_size().await?,
                BodyState::ChunkDataEnd => {
                    let (content, total) = self.line().await?;
                    if content != 0 {
                        return Err(invalid("missing CRLF after chunk data"));
                    }
                    self.consume(total);
                    *state = BodyState::ChunkSize;
                }
            }
        }
    }

    async fn take_data(&mut self, left: u64) -> io::Result<usize> {
        self.ensure_some().await?;
        Ok((self.avail().len() as u64).min(left) as usize)
    }

    /// Parses a chunk-size line; the last chunk also swallows the trailers.
    async fn chunk_size(&mut self) -> io::Result<BodyState> {
        let (content, total) = self.line().await?;
        let line = &self.avail()[..content];
        let digits = line.split(|&b| b == b';').next().unwrap_or(b"");
        let size = parse_hex(trim(digits)).ok_or_else(|| invalid("bad chunk size"))?;
        self.consume(total);
        if size > 0 {
            return Ok(BodyState::ChunkData(size));
        }
        loop {
            let (content, total) = self.line().await?;
            self.consume(total);
            if content == 0 {
                return Ok(BodyState::Done);
            }
        }
    }

    /// Reads and drops a whole request body.
    pub async fn discard_body(&mut self, state: &mut BodyState) -> io::Result<()> {
        loop {
            let n = self.body_piece(state).await?;
            if n == 0 {
                return Ok(());
            }
            self.consume(n);
        }
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 15 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        Some(acc * 16 + d as u64)
    })
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_sizes() {
        assert_eq!(super::parse_hex(b"1A"), Some(26));
        assert_eq!(super::parse_hex(b"x"), None);
        assert_eq!(super::parse_hex(b""), None);
        assert_eq!(super::trim(b" 5 "), b"5");
    }
}
