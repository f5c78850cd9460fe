//! Streaming, strict decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! It is fed whatever bytes have arrived and writes out either a normalised chunked stream
//! (sizes re-encoded in lower-case hex, extensions and trailers dropped) for a peer that speaks
//! chunked, or the bare data for a peer that does not. It never reads past the final CRLF, so a
//! pipelined message after the body stays in the buffer.

/// What the decoder writes for the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedOutput {
    /// Re-encode as chunked.
    Chunked,
    /// Only the data bytes (for HTTP/1.0 clients and close-delimited relays).
    Data,
}

/// Writes the size line of a chunk of `n` data bytes (lower-case hex, no extensions).
pub fn push_size_line(out: &mut Vec<u8>, n: u64) {
    use std::io::Write;
    let _ = write!(out, "{n:x}\r\n");
}

/// The last chunk with no trailers: what ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: u8,
    },
    /// Whitespace after the size (RFC 9112 §7.1's BWS): only `;` and an extension, or the
    /// line's end, may follow (`5 6` or `5 junk` is no size line).
    SizeWs,
    /// After `;`: extensions, up to CR.
    Ext,
    /// Expecting LF after the size line's CR.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    TrailerLf,
    /// Expecting LF of the final empty line.
    EndLf,
    Done,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    remaining: u64,
    /// Data bytes seen, for body-size limits.
    pub total: u64,
    trailer_bytes: usize,
    /// Extension bytes on the current size line.
    ext_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            remaining: 0,
            total: 0,
            trailer_bytes: 0,
            ext_bytes: 0,
        }
    }
}

/// Hex digits a chunk size may have, leading zeros included.
const MAX_SIZE_DIGITS: u8 = 64;

/// Trailers are dropped, but a peer may not stream them forever.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Extensions are dropped too; a size line may carry this many bytes of them, so a peer cannot
/// stream an endless line that no body limit counts.
const MAX_EXT_BYTES: usize = 4 * 1024;

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of the current chunk's data still to come (for splicing chunk data).
    pub fn data_remaining(&self) -> u64 {
        if self.state == State::Data {
            self.remaining
        } else {
            0
        }
    }

    /// Decodes from `input`, appending to `out`. Returns how many input bytes were consumed;
    /// stops at the end of the body.
    pub fn decode(
        &mut self,
        input: &[u8],
        mode: ChunkedOutput,
        out: &mut Vec<u8>,
    ) -> Result<usize, &'static str> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if self.state == State::Data {
                let n = (self.remaining.min((input.len() - i) as u64)) as usize;
                out.extend_from_slice(&input[i..i + n]);
                i += n;
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.step(input[i], mode, out)?;
            i += 1;
        }
        Ok(i)
    }

    /// Marks `n` data bytes of the current chunk as relayed by someone else (splice).
    pub fn skip_data(&mut self, n: u64) {
        debug_assert!(self.state == State::Data && n <= self.remaining);
        self.remaining -= n;
        if self.remaining == 0 {
            self.state = State::DataCr;
        }
    }

    fn step(&mut self, b: u8, mode: ChunkedOutput, out: &mut Vec<u8>) -> Result<(), &'static str> {
        self.state = match self.state {
            // Leading zeros are allowed (`chunk-size = 1*HEXDIG`), so the bound is on the
            // value (below 2^60) and, separately, on the digits a size line may spend.
            State::Size { digits } => match hex(b) {
                Some(_) if digits >= MAX_SIZE_DIGITS => return Err("chunk size line too long"),
                Some(d) if self.size < 1 << 56 => {
                    self.size = self.size * 16 + d as u64;
                    State::Size { digits: digits + 1 }
                }
                Some(_) => return Err("chunk size too large"),
                None if digits == 0 => return Err("invalid chunk size"),
                None => return self.after_size(b, mode, out),
            },
            State::SizeWs => match b {
                b' ' | b'\t' => {
                    self.ext_bytes += 1;
                    if self.ext_bytes > MAX_EXT_BYTES {
                        return Err("chunk extension too long");
                    }
                    State::SizeWs
                }
                b';' => State::Ext,
                b'\r' => {
                    self.ext_bytes = 0;
                    State::SizeLf
                }
                _ => return Err("invalid chunk size line"),
            },
            State::Ext => match b {
                b'\r' => {
                    self.ext_bytes = 0;
                    State::SizeLf
                }
                b'\n' => return Err("bare LF in chunk line"),
                b'\t' | b' '..=b'~' | 0x80..=0xff => {
                    self.ext_bytes += 1;
                    if self.ext_bytes > MAX_EXT_BYTES {
                        return Err("chunk extension too long");
                    }
                    State::Ext
                }
                _ => return Err("invalid byte in chunk extension"),
            },
            State::SizeLf => {
                if b != b'\n' {
                    return Err("chunk line must end with CRLF");
                }
                return self.start_chunk(mode, out);
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => {
                if mode == ChunkedOutput::Chunked {
                    out.extend_from_slice(b"\r\n");
                }
                self.size = 0;
                State::Size { digits: 0 }
            }
            State::DataCr | State::DataLf => return Err("chunk data must end with CRLF"),
            State::TrailerStart => match b {
                b'\r' => State::EndLf,
                b'\n' => return Err("bare LF in trailer"),
                _ => self.trailer_byte(b)?,
            },
            State::Trailer => match b {
                b'\r' => State::TrailerLf,
                b'\n' => return Err("bare LF in trailer"),
                _ => self.trailer_byte(b)?,
            },
            State::TrailerLf if b == b'\n' => State::TrailerStart,
            State::TrailerLf => return Err("trailer line must end with CRLF"),
            State::EndLf if b == b'\n' => {
                if mode == ChunkedOutput::Chunked {
                    out.extend_from_slice(LAST_CHUNK);
                }
                State::Done
            }
            State::EndLf => return Err("chunked body must end with CRLF"),
            State::Data | State::Done => unreachable!("handled by decode"),
        };
        Ok(())
    }

    fn after_size(
        &mut self,
        b: u8,
        _mode: ChunkedOutput,
        _out: &mut Vec<u8>,
    ) -> Result<(), &'static str> {
        self.state = match b {
            b'\r' => State::SizeLf,
            b';' => State::Ext,
            b' ' | b'\t' => State::SizeWs,
            _ => return Err("invalid chunk size"),
        };
        Ok(())
    }

    fn start_chunk(&mut self, mode: ChunkedOutput, out: &mut Vec<u8>) -> Result<(), &'static str> {
        if self.size == 0 {
            self.state = State::TrailerStart;
            return Ok(());
        }
        self.total = self
            .total
            .checked_add(self.size)
            .ok_or("chunked body too large")?;
        if mode == ChunkedOutput::Chunked {
            push_size_line(out, self.size);
        }
        self.remaining = self.size;
        self.state = State::Data;
        Ok(())
    }

    fn trailer_byte(&mut self, b: u8) -> Result<State, &'static str> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err("trailer section too large");
        }
        if b < b' ' && b != b'\t' || b == 0x7f {
            return Err("control byte in trailer");
        }
        Ok(State::Trailer)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], mode: ChunkedOutput) -> Result<(usize, Vec<u8>, bool), &'static str> {
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        let n = d.decode(input, mode, &mut out)?;
        Ok((n, out, d.is_done()))
    }

    #[test]
    fn decodes_and_stops_at_end() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1";
        let (n, out, done) = run(body, ChunkedOutput::Data).unwrap();
        assert!(done);
        assert_eq!(out, b"hello0123456789");
        assert_eq!(&body[n..], b"GET / HTTP/1.1");
        let (_, out, _) = run(body, ChunkedOutput::Chunked).unwrap();
        assert_eq!(out, b"5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n");
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let body = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        for b in body.chunks(1) {
            assert_eq!(d.decode(b, ChunkedOutput::Data, &mut out).unwrap(), 1);
        }
        assert!(d.is_done());
        assert_eq!(out, b"abc0123456789abcdef");
        assert_eq!(d.total, 19);
    }

    #[test]
    fn rejects_bad_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"5\r\nhello\n0\r\n\r\n",
            b"-5\r\n",
            b"ffffffffffffffffff\r\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\n\n",
            b"5\r\r\n",
            // After the size's whitespace only `;` or the line's end may come.
            b"5 6\r\nhello\r\n0\r\n\r\n",
            b"5 junk\r\nhello\r\n0\r\n\r\n",
            b"5 =x\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                run(bad, ChunkedOutput::Data).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn whitespace_before_an_extension_or_the_end_is_allowed() {
        for good in [
            &b"5 \r\nhello\r\n0\r\n\r\n"[..],
            b"5\t ; a=b\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                run(good, ChunkedOutput::Data).is_ok(),
                "{:?}",
                String::from_utf8_lossy(good)
            );
        }
    }

    #[test]
    fn leading_zeros_are_allowed_but_bounded() {
        let body = b"00000000000000000005\r\nhello\r\n0000\r\n\r\n";
        let (n, out, done) = run(body, ChunkedOutput::Data).unwrap();
        assert!(done && n == body.len());
        assert_eq!(out, b"hello");
        let (_, out, _) = run(body, ChunkedOutput::Chunked).unwrap();
        assert_eq!(
            out, b"5\r\nhello\r\n0\r\n\r\n",
            "sizes are forwarded canonical"
        );
        // The largest size, then one past it (2^60), then a size line of endless zeros.
        assert!(run(b"0fffffffffffffff\r\n", ChunkedOutput::Data).is_ok());
        assert!(run(b"1000000000000000\r\n", ChunkedOutput::Data).is_err());
        let zeros = format!("{}1\r\nx\r\n", "0".repeat(64));
        assert!(run(zeros.as_bytes(), ChunkedOutput::Data).is_err());
        let zeros = format!("{}1\r\nx\r\n", "0".repeat(63));
        assert!(run(zeros.as_bytes(), ChunkedOutput::Data).is_ok());
    }

    #[test]
    fn extension_length_is_capped_per_line() {
        let ok = |n: usize| {
            let mut body = format!("5;{}\r\nhello\r\n", "a".repeat(n)).into_bytes();
            body.extend_from_slice(format!("1;{}\r\nx\r\n0\r\n\r\n", "b".repeat(n)).as_bytes());
            run(&body, ChunkedOutput::Data).map(|(_, out, done)| (out, done))
        };
        // Counted after the ';': each line may carry MAX_EXT_BYTES.
        assert_eq!(ok(MAX_EXT_BYTES), Ok((b"hellox".to_vec(), true)));
        assert_eq!(ok(MAX_EXT_BYTES + 1), Err("chunk extension too long"));
    }
}
