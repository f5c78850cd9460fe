//! The endpoints. Each writes its response into the connection's output
//! buffer and returns whether the connection may serve another request.

use std::io::{self, Write};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;

use super::conn::{BodyState, ConnIo, OUT_BUF};
#[cfg(test)]
use super::pattern_byte;
use super::request::{BodyFraming, Endpoint, HeadError, Method, RequestHead};
use super::BackendStats;

/// What every connection on a worker shares.
pub struct Ctx {
    pub fixed_size: usize,
    pub stats: Arc<BackendStats>,
}

/// Largest piece of body appended in one go (also the chunk size of `/chunked`).
const PIECE: usize = 16 * 1024;
/// `PATTERN[k..k + PIECE]` is the pattern starting at any offset with `k = offset % 26`.
static PATTERN: [u8; PIECE + 26] = make_pattern();
static XS: [u8; PIECE] = [b'x'; PIECE];

const fn make_pattern() -> [u8; PIECE + 26] {
    let mut a = [0u8; PIECE + 26];
    let mut i = 0;
    while i < a.len() {
        a[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    a
}

/// Which bytes a generated body is made of.
#[derive(Clone, Copy)]
enum Fill {
    X,
    Pattern,
}

/// How the response body is delimited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// No length header; the body ends when the connection closes.
    Close,
    /// Status codes that never carry a body (1xx, 204, 304).
    NoBody,
}

/// Serves one accepted connection until it closes or errs.
pub async fn serve(stream: TcpStream, ctx: Rc<Ctx>) {
    let mut io = ConnIo::new(stream);
    if let Ok(()) = serve_requests(&mut io, &ctx).await {
        io.close().await;
    }
}

async fn serve_requests(io: &mut ConnIo, ctx: &Ctx) -> io::Result<()> {
    loop {
        let head = match io.read_head().await? {
            None => return Ok(()),
            Some(Ok(head)) => head,
            Some(Err(e)) => {
                reject(io, e);
                return Ok(());
            }
        };
        ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
        // Responses stay in `out` while more pipelined requests are buffered;
        // the next read flushes them in one write.
        if !respond(io, ctx, &head).await? {
            return Ok(());
        }
    }
}

fn reject(io: &mut ConnIo, e: HeadError) {
    let line: &[u8] = match e {
        HeadError::Bad => b"HTTP/1.1 400 Bad Request\r\n",
        HeadError::TooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
    };
    io.out.extend_from_slice(line);
    io.out
        .extend_from_slice(b"Content-Length: 0\r\nConnection: close\r\n\r\n");
}

async fn respond(io: &mut ConnIo, ctx: &Ctx, head: &RequestHead) -> io::Result<bool> {
    if head.expect_continue && head.body != BodyFraming::None {
        io.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let mut body = BodyState::for_framing(head.body);
    if head.endpoint == Endpoint::Echo {
        io.consume(head.head_len);
        return echo(io, head, &mut body).await;
    }
    if head.endpoint == Endpoint::Headers {
        return headers(io, head, &mut body).await;
    }
    io.consume(head.head_len);
    io.discard_body(&mut body).await?;
    match head.endpoint {
        Endpoint::Size(n) => fixed(io, head, n, Fill::Pattern).await,
        Endpoint::Chunked(n) => chunked(io, head, n).await,
        Endpoint::Status(code) => Ok(status(io, head, code)),
        Endpoint::Delay(ms) => {
            io.flush().await?;
            monoio::time::sleep(Duration::from_millis(ms)).await;
            fixed(io, head, ctx.fixed_size as u64, Fill::X).await
        }
        Endpoint::Sse {
            count,
            interval_ms,
            stamp,
        } => sse(io, head, count, interval_ms, stamp).await,
        Endpoint::Ws => websocket(io, head).await,
        Endpoint::BadParam => {
            write_head(&mut io.out, head, 400, &[TEXT], Framing::Length(0));
            Ok(head.keep_alive)
        }
        _ => fixed(io, head, ctx.fixed_size as u64, Fill::X).await,
    }
}

const TEXT: (&str, &str) = ("Content-Type", "text/plain");

/// `/headers`: the request head as received. Answered before the request body
/// is read, because reading may move or overwrite the head bytes.
async fn headers(io: &mut ConnIo, req: &RequestHead, body: &mut BodyState) -> io::Result<bool> {
    let len = req.head_len as u64;
    write_head(&mut io.out, req, 200, &[TEXT], Framing::Length(len));
    if req.method != Method::Head {
        io.copy_to_out(req.head_len);
    }
    io.consume(req.head_len);
    io.discard_body(body).await?;
    Ok(req.keep_alive)
}

/// Status line, extra headers, framing header, connection header, blank line.
fn write_head(
    out: &mut Vec<u8>,
    req: &RequestHead,
    code: u16,
    headers: &[(&str, &str)],
    framing: Framing,
) {
    let keep_alive = req.keep_alive && framing != Framing::Close;
    let _ = write!(out, "HTTP/1.1 {code} {}\r\n", reason(code));
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    match framing {
        Framing::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Close | Framing::NoBody => {}
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if !req.http11 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// HTTP/1.0 clients cannot read chunked bodies; they get close-delimited ones.
fn chunked_or_close(req: &RequestHead) -> Framing {
    if req.http11 {
        Framing::Chunked
    } else {
        Framing::Close
    }
}

fn keeps(req: &RequestHead, framing: Framing) -> bool {
    req.keep_alive && framing != Framing::Close
}

/// A Content-Length response of `n` generated bytes, streamed in bounded writes.
async fn fixed(io: &mut ConnIo, req: &RequestHead, n: u64, fill: Fill) -> io::Result<bool> {
    write_head(&mut io.out, req, 200, &[TEXT], Framing::Length(n));
    if req.method != Method::Head {
        write_generated(io, 0, n, fill, false).await?;
    }
    Ok(req.keep_alive)
}

async fn chunked(io: &mut ConnIo, req: &RequestHead, n: u64) -> io::Result<bool> {
    let framing = chunked_or_close(req);
    write_head(&mut io.out, req, 200, &[TEXT], framing);
    if req.method != Method::Head {
        write_generated(io, 0, n, Fill::Pattern, framing == Framing::Chunked).await?;
        if framing == Framing::Chunked {
            io.out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    Ok(keeps(req, framing))
}

/// Appends bytes `[from, from + n)` of a generated body, flushing as the output fills.
async fn write_generated(
    io: &mut ConnIo,
    from: u64,
    n: u64,
    fill: Fill,
    chunk: bool,
) -> io::Result<()> {
    let mut at = from;
    let end = from + n;
    // Big bodies get the full write buffer once; small ones never grow it.
    let want = OUT_BUF + PIECE + 32;
    if n > PIECE as u64 && io.out.capacity() < want {
        io.out.reserve_exact(want - io.out.len());
    }
    while at < end {
        let len = ((end - at) as usize).min(PIECE);
        let bytes = match fill {
            Fill::X => &XS[..len],
            Fill::Pattern => {
                let k = (at % 26) as usize;
                &PATTERN[k..k + len]
            }
        };
        if chunk {
            let _ = write!(io.out, "{len:x}\r\n");
        }
        io.out.extend_from_slice(bytes);
        if chunk {
            io.out.extend_from_slice(b"\r\n");
        }
        at += len as u64;
        io.maybe_flush().await?;
    }
    Ok(())
}

fn status(io: &mut ConnIo, req: &RequestHead, code: u16) -> bool {
    match code {
        // A 1xx is not a final response; send it alone and close so the
        // client (or proxy under test) sees what an odd upstream does.
        100..=199 => {
            write_head(&mut io.out, req, code, &[], Framing::NoBody);
            false
        }
        204 | 304 => {
            write_head(&mut io.out, req, code, &[], Framing::NoBody);
            req.keep_alive
        }
        _ => {
            let body = format!("{{\"status\":{code}}}");
            let json = ("Content-Type", "application/json");
            write_head(
                &mut io.out,
                req,
                code,
                &[json],
                Framing::Length(body.len() as u64),
            );
            if req.method != Method::Head {
                io.out.extend_from_slice(body.as_bytes());
            }
            req.keep_alive
        }
    }
}

/// Streams the request body back as it arrives, keeping the request's framing.
async fn echo(io: &mut ConnIo, req: &RequestHead, body: &mut BodyState) -> io::Result<bool> {
    let octets = ("Content-Type", "application/octet-stream");
    let framing = match req.body {
        BodyFraming::None => Framing::Length(0),
        BodyFraming::Length(n) => Framing::Length(n),
        BodyFraming::Chunked => chunked_or_close(req),
    };
    // The length is only known up front for Content-Length requests.
    let len_text;
    let headers: &[(&str, &str)] = match framing {
        Framing::Length(n) => {
            len_text = n.to_string();
            &[octets, ("X-Echo-Bytes", len_text.as_str())]
        }
        _ => &[octets],
    };
    write_head(&mut io.out, req, 200, headers, framing);
    let send = req.method != Method::Head;
    let chunk = framing == Framing::Chunked;
    loop {
        let n = io.body_piece(body).await?;
        if n == 0 {
            break;
        }
        if send {
            if chunk {
                let _ = write!(io.out, "{n:x}\r\n");
            }
            io.copy_to_out(n);
            if chunk {
                io.out.extend_from_slice(b"\r\n");
            }
        }
        io.consume(n);
        io.maybe_flush().await?;
    }
    if send && chunk {
        io.out.extend_from_slice(b"0\r\n\r\n");
    }
    Ok(keeps(req, framing))
}

/// Server-sent events, close-delimited; stops early when a write fails.
async fn sse(
    io: &mut ConnIo,
    req: &RequestHead,
    count: u64,
    interval_ms: u64,
    stamp: bool,
) -> io::Result<bool> {
    let headers = [
        ("Content-Type", "text/event-stream"),
        ("Cache-Control", "no-cache"),
    ];
    write_head(&mut io.out, req, 200, &headers, Framing::Close);
    io.flush().await?;
    if req.method == Method::Head {
        return Ok(false);
    }
    for k in 1..=count {
        if stamp {
            let us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            let _ = write!(io.out, "id: {k}\ndata: event {k} t={us}\n\n");
        } else {
            let _ = write!(io.out, "id: {k}\ndata: event {k}\n\n");
        }
        io.flush().await?;
        if k < count {
            monoio::time::sleep(Duration::from_millis(interval_ms)).await;
        }
    }
    Ok(false)
}

/// `/ws`: the WebSocket handshake, then the echo loop; the connection ends with it.
async fn websocket(io: &mut ConnIo, req: &RequestHead) -> io::Result<bool> {
    let Some(accept) = req.ws_accept else {
        write_head(&mut io.out, req, 400, &[TEXT], Framing::Length(0));
        return Ok(false);
    };
    let _ = write!(
        io.out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        String::from_utf8_lossy(&accept)
    );
    io.flush().await?;
    super::ws::echo(io).await?;
    Ok(false)
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::{pattern_byte, PATTERN};

    #[test]
    fn pattern_table_matches_pattern_byte() {
        assert!(PATTERN
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern_byte(i as u64)));
    }
}
