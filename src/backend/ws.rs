//! `/ws`: a WebSocket echo server (RFC 6455) for tunnel tests and the soak benchmark.
//!
//! Every data frame is echoed as it arrives, frame by frame, with the client's FIN/RSV/opcode
//! byte and its payload unmasked, so fragmented messages come back fragmented the same way
//! and every payload byte is identical. Pings are answered with pongs, pongs are ignored, and a
//! close frame is echoed (same code and reason) before the connection closes. A text frame
//! `close:CODE` makes the server start the close handshake itself with that code (to test
//! server-initiated closes through a proxy).

use std::io;

use super::conn::ConnIo;

/// Largest frame payload accepted; bigger frames get close 1009.
const MAX_FRAME: u64 = 64 << 20;
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut input = Vec::with_capacity(key.len() + GUID.len());
    input.extend_from_slice(key);
    input.extend_from_slice(GUID);
    let digest = sha1(&input);
    let mut out = [0u8; 28];
    base64_encode(&digest, &mut out);
    out
}

/// Echoes frames until a close, an error or EOF. The 101 head is already in `io.out`.
pub async fn echo(io: &mut ConnIo) -> io::Result<()> {
    // We sent a close of our own and wait for the client's.
    let mut closing = false;
    loop {
        let Some((hlen, plen)) = frame_len(io.avail())? else {
            if io.fill().await? == 0 {
                return Ok(());
            }
            continue;
        };
        let total = hlen + plen as usize;
        while io.avail().len() < total {
            if io.fill().await? == 0 {
                return Ok(());
            }
        }
        let mut out = std::mem::take(&mut io.out);
        let frame = &io.avail()[..total];
        let first = frame[0];
        let opcode = first & 0x0f;
        let mask = [
            frame[hlen - 4],
            frame[hlen - 3],
            frame[hlen - 2],
            frame[hlen - 1],
        ];
        let payload = &frame[hlen..];
        let mut close = false;
        match opcode {
            0x9 => put_frame(&mut out, 0x8a, payload, mask),
            0xa => {}
            // The answer to our own close: the handshake is complete.
            0x8 if closing => close = true,
            0x8 => {
                put_frame(&mut out, 0x88, payload, mask);
                close = true;
            }
            0x1 if payload.len() < 16 && unmask(payload, mask).starts_with(b"close:") => {
                let text = unmask(payload, mask);
                let code: u16 = std::str::from_utf8(&text[6..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1000);
                put_frame(&mut out, 0x88, &code.to_be_bytes(), [0; 4]);
                closing = true;
            }
            _ => put_frame(&mut out, first, payload, mask),
        }
        io.out = out;
        io.consume(total);
        if close {
            io.flush().await?;
            return Ok(());
        }
        io.maybe_flush().await?;
    }
}

/// (header length, payload length) of a complete frame header at the start of `buf`.
fn frame_len(buf: &[u8]) -> io::Result<Option<(usize, u64)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "client frame not masked",
        ));
    }
    let (ext, len) = match buf[1] & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(n as u64)),
    };
    let hlen = 2 + ext + 4;
    if buf.len() < hlen {
        return Ok(None);
    }
    let len = len.unwrap_or_else(|| {
        buf[2..2 + ext]
            .iter()
            .fold(0u64, |acc, &b| acc << 8 | b as u64)
    });
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    Ok(Some((hlen, len)))
}

fn unmask(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i & 3])
        .collect()
}

/// Appends an unmasked server frame carrying `payload` unmasked with `mask`.
fn put_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(first);
    let n = payload.len();
    if n < 126 {
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.reserve(n);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

fn base64_encode(input: &[u8], out: &mut [u8]) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = 0;
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            out[o + k] = if k <= chunk.len() {
                T[(n >> (18 - 6 * k) & 63) as usize]
            } else {
                b'='
            };
        }
        o += 4;
    }
}

/// SHA-1 (FIPS 180-4); only for the handshake's accept key.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_key() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn sha1_vectors() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn frame_header_lengths() {
        assert_eq!(frame_len(&[0x82, 0x85, 1, 2, 3, 4]).unwrap(), Some((6, 5)));
        assert_eq!(frame_len(&[0x82, 0xfe, 1]).unwrap(), None);
        assert_eq!(
            frame_len(&[0x82, 0xfe, 1, 0, 9, 9, 9, 9]).unwrap(),
            Some((8, 256))
        );
        assert!(frame_len(&[0x82, 0x05]).is_err());
    }
}
