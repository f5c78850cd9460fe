//! Request heads: parse with httparse, keep only what the handlers need.
//!
//! The parsed head is reduced to a small owned value right away so the read
//! buffer can be compacted or refilled while the request is being answered.

/// Largest request head we accept; bigger heads get 431 and a close.
pub const MAX_HEAD: usize = 64 * 1024;
/// Header slots handed to httparse; more headers than this is a 431.
const MAX_HEADERS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Head,
    Other,
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// What the path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Default,
    Size(u64),
    Chunked(u64),
    Echo,
    Status(u16),
    Delay(u64),
    Headers,
    Sse {
        count: u64,
        interval_ms: u64,
        /// `stamp=1`: each event carries the wall-clock time it was written (µs since the epoch).
        stamp: bool,
    },
    /// WebSocket echo (`/ws`).
    Ws,
    /// A known endpoint with an unusable parameter (e.g. `/size/abc`).
    BadParam,
}

#[derive(Debug, Clone, Copy)]
pub struct RequestHead {
    pub method: Method,
    /// True for HTTP/1.1, false for HTTP/1.0.
    pub http11: bool,
    pub keep_alive: bool,
    pub body: BodyFraming,
    pub expect_continue: bool,
    pub endpoint: Endpoint,
    /// Bytes of the head including the final CRLFCRLF.
    pub head_len: usize,
    /// `Sec-WebSocket-Accept` for the request's `Sec-WebSocket-Key`, if it had one.
    pub ws_accept: Option<[u8; 28]>,
}

/// Why a head could not be accepted; both end the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    Bad,
    TooLarge,
}

/// Parses a head from the start of `buf`: `Ok(None)` means more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Bad),
    };
    if head_len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let http11 = req.version == Some(1);
    let method = match req.method {
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let flags = HeaderFlags::scan(req.headers)?;
    Ok(Some(RequestHead {
        method,
        http11,
        keep_alive: if http11 {
            !flags.close
        } else {
            flags.keep_alive && !flags.close
        },
        body: flags.body,
        expect_continue: flags.expect_continue && http11,
        endpoint: route(req.path.unwrap_or("/")),
        head_len,
        ws_accept: flags.ws_accept,
    }))
}

/// The header facts the backend acts on.
struct HeaderFlags {
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    body: BodyFraming,
    ws_accept: Option<[u8; 28]>,
}

impl HeaderFlags {
    fn scan(headers: &[httparse::Header<'_>]) -> Result<Self, HeadError> {
        let mut flags = HeaderFlags {
            close: false,
            keep_alive: false,
            expect_continue: false,
            body: BodyFraming::None,
            ws_accept: None,
        };
        let mut length: Option<u64> = None;
        let mut chunked = false;
        for h in headers {
            let value = std::str::from_utf8(h.value).map_err(|_| HeadError::Bad)?;
            if h.name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    flags.close |= token.eq_ignore_ascii_case("close");
                    flags.keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                }
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let n = parse_decimal(value.trim()).ok_or(HeadError::Bad)?;
                // Differing duplicate lengths are a smuggling vector: refuse them.
                if length.is_some_and(|old| old != n) {
                    return Err(HeadError::Bad);
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Only a final `chunked` coding frames the body (RFC 9112 6.3).
                let last = value.rsplit(',').next().unwrap_or("").trim();
                if !last.eq_ignore_ascii_case("chunked") {
                    return Err(HeadError::Bad);
                }
                chunked = true;
            } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
                flags.ws_accept = Some(super::ws::accept_key(value.trim().as_bytes()));
            } else if h.name.eq_ignore_ascii_case("expect") {
                flags.expect_continue = value.trim().eq_ignore_ascii_case("100-continue");
            }
        }
        flags.body = match (chunked, length) {
            // Both present is how requests get smuggled; refuse rather than guess.
            (true, Some(_)) => return Err(HeadError::Bad),
            (true, None) => BodyFraming::Chunked,
            (false, Some(0)) | (false, None) => BodyFraming::None,
            (false, Some(n)) => BodyFraming::Length(n),
        };
        Ok(flags)
    }
}

/// Strict decimal: digits only, no sign, no overflow.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Maps a request target to an endpoint; the query string only matters for `/sse`.
pub fn route(target: &str) -> Endpoint {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let num = |rest: &str| parse_decimal(rest);
    if let Some(rest) = path.strip_prefix("/size/") {
        return num(rest).map_or(Endpoint::BadParam, Endpoint::Size);
    }
    if let Some(rest) = path.strip_prefix("/chunked/") {
        return num(rest).map_or(Endpoint::BadParam, Endpoint::Chunked);
    }
    if let Some(rest) = path.strip_prefix("/status/") {
        return match num(rest) {
            Some(n @ 100..=999) => Endpoint::Status(n as u16),
            _ => Endpoint::BadParam,
        };
    }
    if let Some(rest) = path.strip_prefix("/delay/") {
        return num(rest).map_or(Endpoint::BadParam, Endpoint::Delay);
    }
    match path {
        "/echo" => Endpoint::Echo,
        "/headers" => Endpoint::Headers,
        "/sse" => sse_params(query),
        "/ws" => Endpoint::Ws,
        _ => Endpoint::Default,
    }
}

/// Defaults: 10 events, 100 ms apart.
fn sse_params(query: &str) -> Endpoint {
    let mut count = 10;
    let mut interval_ms = 100;
    let mut stamp = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(n) = parse_decimal(value) else {
            return Endpoint::BadParam;
        };
        match key {
            "count" => count = n,
            "interval_ms" => interval_ms = n,
            "stamp" => stamp = n != 0,
            _ => {}
        }
    }
    Endpoint::Sse {
        count,
        interval_ms,
        stamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/"), Endpoint::Default);
        assert_eq!(route("/size/10?x=1"), Endpoint::Size(10));
        assert_eq!(route("/size/-1"), Endpoint::BadParam);
        assert_eq!(route("/status/99"), Endpoint::BadParam);
        assert_eq!(
            route("/sse?count=3&interval_ms=5"),
            Endpoint::Sse {
                count: 3,
                interval_ms: 5,
                stamp: false,
            }
        );
    }

    #[test]
    fn framing_and_keepalive() {
        let h =
            parse(b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(h.keep_alive && !h.http11);
        assert_eq!(h.body, BodyFraming::Length(5));
        let both = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(both).unwrap_err(), HeadError::Bad);
        assert!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    }
}
