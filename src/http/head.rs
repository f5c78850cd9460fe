//! Request and response heads. Parsing stores offsets into the connection's read buffer instead
//! of copying, and reuses the header vector, so a parsed head costs no allocation once warm.

use std::mem::MaybeUninit;

use super::{BodyKind, HeadError};

/// Most header fields a head may carry; `limits.max_headers` is capped to this.
pub const MAX_HEADERS: usize = 256;

/// A byte range inside the buffer the head was parsed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    fn of(buf: &[u8], part: &[u8]) -> Span {
        // An empty part need not point into `buf` (httparse returns a static "" for a status
        // line without a reason phrase); its offset would be garbage.
        if part.is_empty() {
            return Span::default();
        }
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        debug_assert!(start + part.len() <= buf.len(), "span outside its buffer");
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    /// Like `get`, but `None` when `buf` no longer holds the span (a buffer that went away
    /// with an abandoned read).
    #[inline]
    pub fn try_get<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        buf.get(self.start as usize..self.end as usize)
    }
}

/// One header field; `hop` marks fields that must not be forwarded as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderRef {
    pub name: Span,
    pub value: Span,
    pub hop: bool,
}

/// Connection-level facts both heads share.
#[derive(Debug, Clone, Copy, Default)]
struct ConnTokens {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    /// Some other field is named, and must be dropped as hop-by-hop.
    names_fields: bool,
}

#[derive(Debug, Default)]
pub struct RequestHead {
    pub head_len: usize,
    pub method: Span,
    /// Path and query (the authority of an absolute-form target is in `authority`).
    pub target: Span,
    /// Host and port of an absolute-form target; it replaces the Host field.
    pub authority: Option<Span>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<HeaderRef>,
    pub host: Option<Span>,
    pub body: BodyKind,
    /// The request said `Content-Length: 0` (its body is `None`, but the field is passed on:
    /// RFC 9110 §8.6, and some origins answer a bodiless POST without it with 411).
    pub zero_length: bool,
    /// The client wants the connection kept after this exchange.
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` header (WebSocket handshake).
    pub upgrade: Option<Span>,
    pub is_head: bool,
    /// Index of the last `X-Forwarded-For` field, which ringway appends to.
    pub forwarded_for: Option<usize>,
}

impl RequestHead {
    pub fn method<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.method.get(buf)
    }

    /// The path and query to route and forward (`/` for `http://host` with no path).
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        match self.target.get(buf) {
            b"" => b"/",
            p => p,
        }
    }

    /// Methods a retry may repeat (RFC 9110 §9.2.2).
    pub fn is_idempotent(&self, buf: &[u8]) -> bool {
        matches!(
            self.method.get(buf),
            b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
        )
    }
}

#[derive(Debug, Default)]
pub struct ResponseHead {
    pub head_len: usize,
    pub status: u16,
    pub minor: u8,
    pub reason: Span,
    pub headers: Vec<HeaderRef>,
    pub body: BodyKind,
    /// The upstream will keep the connection open after this response.
    pub keep_alive: bool,
    /// Content-Length as sent, kept for HEAD and 304 answers, which carry no body.
    pub declared_length: Option<u64>,
    /// The upstream sent a `Date` (else the gateway adds one: RFC 9110 §6.6.1).
    pub has_date: bool,
}

/// Limits applied while parsing a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_head: usize,
    pub max_uri: usize,
    pub max_headers: usize,
}

type Slots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

fn slots<'b>() -> Slots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Parses a request head from the start of `buf`. `Ok(false)` means more bytes are needed.
pub fn parse_request(
    buf: &[u8],
    limits: &HeadLimits,
    head: &mut RequestHead,
) -> Result<bool, HeadError> {
    let mut slots = slots();
    let mut req = httparse::Request::new(&mut []);
    let n = limits.max_headers.min(MAX_HEADERS);
    let status = req.parse_with_uninit_headers(buf, &mut slots[..n]);
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial_request(buf, limits),
        Err(e) => {
            return match (e, as_http11(buf, true)) {
                (httparse::Error::Version, Some(copy)) => parse_request(&copy, limits, head),
                (e, _) => Err(request_error(e, buf)),
            }
        }
    };
    if len > limits.max_head {
        return Err(HeadError::TooLarge);
    }
    check_line_endings(&buf[..len], req.headers.len()).map_err(HeadError::Bad)?;
    let target = req.path.unwrap_or("");
    if target.len() > limits.max_uri {
        return Err(HeadError::UriTooLong);
    }
    if req.method == Some("CONNECT") {
        // Its 2xx would start a tunnel the client expects and the relay would not provide.
        return Err(HeadError::Connect);
    }
    let (path, authority) = split_target(target, req.method == Some("OPTIONS"))?;
    head.head_len = len;
    head.method = Span::of(buf, req.method.unwrap_or("").as_bytes());
    head.target = Span::of(buf, path.as_bytes());
    head.authority = authority.map(|a| Span::of(buf, a.as_bytes()));
    head.minor = req.version.unwrap_or(1);
    head.is_head = req.method == Some("HEAD");
    classify_request(buf, req.headers, head)
}

/// Normalises the parsed request's path in place (see [`super::path`]): what is routed is
/// what is forwarded. A percent-encoded dot segment is a 400.
pub fn normalize_target(buf: &mut [u8], head: &mut RequestHead) -> Result<(), HeadError> {
    let (start, end) = (head.target.start as usize, head.target.end as usize);
    let len = super::path::normalize(&mut buf[start..end]).map_err(HeadError::Bad)?;
    head.target.end = (start + len) as u32;
    Ok(())
}

/// Splits a request target into the path to route and forward, and the authority of an
/// absolute-form target (`http://host:port/path`), which RFC 9112 §3.2.2 says a server must
/// accept and use instead of the Host field.
fn split_target(target: &str, options: bool) -> Result<(&str, Option<&str>), HeadError> {
    if target.starts_with('/') || (options && target == "*") {
        return Ok((target, None));
    }
    let rest = strip_prefix_ignore_case(target, "http://")
        .or_else(|| strip_prefix_ignore_case(target, "https://"))
        .ok_or(HeadError::Bad(
            "request target must be origin-form or absolute-form",
        ))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') || !valid_host(authority.as_bytes()) {
        return Err(HeadError::Bad("invalid authority in request target"));
    }
    Ok((path, Some(authority)))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A partial head is fine unless it is already over a limit.
fn partial_request(buf: &[u8], limits: &HeadLimits) -> Result<bool, HeadError> {
    let line_end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    if line_end > limits.max_uri + 64 && memchr::memchr(b' ', &buf[..line_end.min(64)]).is_some() {
        return Err(HeadError::UriTooLong);
    }
    if buf.len() >= limits.max_head {
        return Err(HeadError::TooLarge);
    }
    Ok(false)
}

fn request_error(e: httparse::Error, buf: &[u8]) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::Version if looks_like_other_version(buf) => HeadError::Version,
        httparse::Error::Version => HeadError::Bad("malformed HTTP version"),
        httparse::Error::HeaderName => HeadError::Bad("invalid header name"),
        httparse::Error::HeaderValue => HeadError::Bad("invalid header value"),
        httparse::Error::NewLine => HeadError::Bad("invalid line ending"),
        httparse::Error::Token => HeadError::Bad("invalid method or request target"),
        _ => HeadError::Bad("malformed request head"),
    }
}

/// A well-formed request line (method, target and version, one space apart) whose version
/// is `HTTP/d.d` but not 1.0/1.1 earns 505 rather than 400; any other line is malformed (400),
/// whatever it ends with.
fn looks_like_other_version(buf: &[u8]) -> bool {
    let line = &buf[..memchr::memchr(b'\r', buf).unwrap_or(buf.len())];
    let v = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    line.iter().filter(|&&b| b == b' ').count() == 2 && is_version_like(v)
}

fn is_version_like(v: &[u8]) -> bool {
    v.len() == 8
        && v.starts_with(b"HTTP/")
        && v[5].is_ascii_digit()
        && v[6] == b'.'
        && v[7].is_ascii_digit()
}

/// A head whose start line says HTTP/1.2 to HTTP/1.9 (a higher minor version than ours, which
/// RFC 9110 §2.5 says to handle as the highest we implement, as nginx and HAProxy do), copied
/// with the minor digit made 1 so that httparse, which refuses them, can parse it (positions
/// are unchanged). `request`: the version ends the start line, else starts it.
fn as_http11(buf: &[u8], request: bool) -> Option<Vec<u8>> {
    let line = &buf[..memchr::memchr(b'\r', buf)?];
    let at = if request {
        line.len().checked_sub(8)?
    } else {
        0
    };
    let v = line.get(at..at + 8)?;
    if !(is_version_like(v) && v[5] == b'1' && v[7] >= b'2') {
        return None;
    }
    let mut copy = buf.to_vec();
    copy[at + 7] = b'1';
    Some(copy)
}

/// httparse accepts a bare LF as a line ending; RFC 9112 §2.2 lets us, and smuggling defence
/// requires us, to reject it. In a head httparse accepted, every LF ends one of its
/// `fields + 2` lines (start line, fields, empty line), and every CR is followed by an LF
/// (httparse rejects a lone CR). So the head is all-CRLF exactly when it holds `fields + 2`
/// CRs: one counting pass, far cheaper than visiting each line ending.
///
/// httparse skips empty lines before the start line (RFC 9112 §2.2 lets a recipient ignore
/// them), so those are checked here on their own: each must be a CRLF too, and they are left
/// out of the count, or one extra CR up front would hide a bare LF further on.
fn check_line_endings(head: &[u8], fields: usize) -> Result<(), &'static str> {
    let lead = head
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    let (empty_lines, head) = head.split_at(lead);
    let crlf_pairs = empty_lines.chunks(2).all(|p| p == b"\r\n");
    if crlf_pairs && count_byte(head, b'\r') == fields + 2 {
        Ok(())
    } else {
        Err("bare LF or CR in head")
    }
}

/// Occurrences of `b` in `s`. 16-byte blocks add their matches into 16 byte-wide counters,
/// which LLVM turns into one SIMD compare and subtract per block; the counters are summed every
/// 255 blocks, before a lane can wrap. The last bytes go eight per step (SWAR): a byte of `x` is
/// zero exactly where `s` holds `b`, and `(x & 0x7f..) + 0x7f.. | x` has its high bit clear
/// exactly for zero bytes.
fn count_byte(s: &[u8], b: u8) -> usize {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut n = 0;
    let mut blocks = s.chunks_exact(16);
    loop {
        let mut lanes = [0u8; 16];
        let mut taken = 0;
        for block in blocks.by_ref().take(255) {
            for (lane, &x) in lanes.iter_mut().zip(block) {
                *lane += u8::from(x == b);
            }
            taken += 1;
        }
        n += lanes.iter().map(|&k| k as usize).sum::<usize>();
        if taken < 255 {
            break;
        }
    }
    let pattern = u64::from_ne_bytes([b; 8]);
    let mut words = blocks.remainder().chunks_exact(8);
    for c in &mut words {
        let x = u64::from_ne_bytes(c.try_into().expect("chunk of 8")) ^ pattern;
        let nonzero = ((x & LO7).wrapping_add(LO7)) | x;
        n += (!nonzero & HI).count_ones() as usize;
    }
    n + words.remainder().iter().filter(|&&x| x == b).count()
}

/// Case-insensitive match of a field name or token against a lowercase `lower` made of
/// letters, digits and '-', eight bytes per step. OR-ing 0x20 folds ASCII capitals; every byte
/// of such a target has bit 5 set, so the only other byte folding onto it is a control
/// character (for '-' it is CR), which httparse never lets into a name or value.
#[inline]
fn eq(a: &[u8], lower: &str) -> bool {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let b = lower.as_bytes();
    debug_assert!(b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-'));
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x | 0x20 == *y);
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    // Whole words, then one last word ending at the end (overlapping the previous one).
    (0..n / 8).all(|k| word(a, 8 * k) | FOLD == word(b, 8 * k))
        && word(a, n - 8) | FOLD == word(b, n - 8)
}

/// Framing facts gathered from the header fields of either head.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    te: bool,
    chunked_last: bool,
    /// A coding other than chunked (gzip, …): ringway would drop it with the header.
    other_coding: bool,
    conn: ConnTokens,
}

impl Framing {
    fn content_length(&mut self, v: &[u8]) -> Result<(), &'static str> {
        let n = parse_length(v).ok_or("malformed Content-Length")?;
        match self.length {
            Some(old) if old != n => Err("differing Content-Length values"),
            _ => {
                self.length = Some(n);
                Ok(())
            }
        }
    }

    /// Codings accumulate across fields; only the final one decides framing.
    fn transfer_encoding(&mut self, v: &[u8]) -> Result<(), &'static str> {
        for coding in v.split(|&b| b == b',') {
            let c = trim(coding);
            if c.is_empty() {
                continue;
            }
            if self.chunked_last {
                return Err("chunked is not the final transfer coding");
            }
            self.chunked_last = eq(c, "chunked");
            self.other_coding |= !self.chunked_last;
        }
        self.te = true;
        Ok(())
    }
}

fn classify_request(
    buf: &[u8],
    fields: &[httparse::Header<'_>],
    head: &mut RequestHead,
) -> Result<bool, HeadError> {
    let mut f = Framing::default();
    head.headers.clear();
    head.host = None;
    head.upgrade = None;
    head.forwarded_for = None;
    let mut upgrade_field = None;
    for (i, h) in fields.iter().enumerate() {
        // httparse has trimmed the value's leading and trailing whitespace.
        let (name, value) = (h.name.as_bytes(), h.value);
        let mut hop = false;
        match name.len() {
            4 if eq(name, "host") => {
                if head.host.is_some() {
                    return Err(HeadError::Bad("duplicate Host header"));
                }
                head.host = Some(Span::of(buf, value));
            }
            14 if eq(name, "content-length") => {
                f.content_length(value).map_err(HeadError::Bad)?;
                hop = true;
            }
            17 if eq(name, "transfer-encoding") => {
                f.transfer_encoding(value).map_err(HeadError::Bad)?;
                hop = true;
            }
            10 if eq(name, "connection") => {
                connection_tokens(value, &mut f.conn);
                hop = true;
            }
            7 if eq(name, "upgrade") => {
                upgrade_field = Some(Span::of(buf, value));
                hop = true;
            }
            6 if eq(name, "expect") => {
                if !eq(value, "100-continue") {
                    return Err(HeadError::Expectation);
                }
                // End to end (RFC 9110 §10.1.1): the origin's 100 or early final answer comes
                // back as an interim or final response, so a 401 or 413 can stop an upload
                // before it is sent. HTTP/1.0 requests must have it ignored, so it is dropped.
                hop = head.minor != 1;
            }
            15 if eq(name, "x-forwarded-for") => head.forwarded_for = Some(i),
            17 if eq(name, "x-forwarded-proto") => hop = true,
            n => hop = is_hop_by_hop(n, name),
        }
        head.headers.push(HeaderRef {
            name: Span::of(buf, name),
            value: Span::of(buf, value),
            hop,
        });
    }
    if f.te && head.minor == 0 {
        return Err(HeadError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    if f.te && f.length.is_some() {
        return Err(HeadError::Bad("both Content-Length and Transfer-Encoding"));
    }
    if f.te && !f.chunked_last {
        return Err(HeadError::Bad("final transfer coding is not chunked"));
    }
    if f.other_coding {
        return Err(HeadError::UnknownCoding);
    }
    if head.minor == 1 && head.host.is_none() {
        return Err(HeadError::Bad("missing Host header"));
    }
    if let Some(h) = head.host {
        if !valid_host(h.get(buf)) {
            return Err(HeadError::Bad("invalid Host header"));
        }
    }
    if let Some(authority) = head.authority {
        // The target's authority wins; the Host field is replaced when forwarding.
        head.host = Some(authority);
        for h in head
            .headers
            .iter_mut()
            .filter(|h| eq(h.name.get(buf), "host"))
        {
            h.hop = true;
        }
    }
    head.zero_length = f.length == Some(0);
    head.body = if f.te {
        BodyKind::Chunked
    } else {
        match f.length {
            Some(0) | None => BodyKind::None,
            Some(n) => BodyKind::Length(n),
        }
    };
    head.keep_alive = if head.minor == 1 {
        !f.conn.close
    } else {
        f.conn.keep_alive && !f.conn.close
    };
    if f.conn.upgrade && head.minor == 1 {
        // An empty Upgrade names no protocol: there is nothing to switch to. HTTP/1.0 requests
        // cannot upgrade (RFC 9110 §7.8: the field is ignored there).
        head.upgrade = upgrade_field.filter(|u| u.end > u.start);
    }
    if f.conn.names_fields {
        mark_connection_listed(buf, &mut head.headers);
        // A listed X-Forwarded-For is dropped; ringway then writes its own afresh.
        if head.forwarded_for.is_some_and(|i| head.headers[i].hop) {
            head.forwarded_for = None;
        }
    }
    if head.forwarded_for.is_some() {
        // Every X-Forwarded-For line is rewritten as one, the client appended (as nginx's
        // $proxy_add_x_forwarded_for): appending to one line of several would leave an
        // upstream that reads the first line trusting a client-chosen address.
        for h in head.headers.iter_mut().filter(|h| is_forwarded_for(buf, h)) {
            h.hop = true;
        }
    }
    Ok(true)
}

/// Whether `h` is an `X-Forwarded-For` field.
pub fn is_forwarded_for(buf: &[u8], h: &HeaderRef) -> bool {
    h.name.end - h.name.start == 15 && eq(h.name.get(buf), "x-forwarded-for")
}

/// Parses an upstream response head. `Ok(false)` means more bytes are needed; errors become 502.
pub fn parse_response(
    buf: &[u8],
    max_head: usize,
    request_was_head: bool,
    head: &mut ResponseHead,
) -> Result<bool, &'static str> {
    let mut slots = slots();
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err("response head too large")
        }
        Ok(httparse::Status::Partial) => return Ok(false),
        Err(httparse::Error::TooManyHeaders) => return Err("too many response header fields"),
        Err(httparse::Error::Version) => {
            return match as_http11(buf, false) {
                Some(copy) => parse_response(&copy, max_head, request_was_head, head),
                None => Err("malformed response head"),
            }
        }
        Err(_) => return Err("malformed response head"),
    };
    if len > max_head {
        return Err("response head too large");
    }
    check_line_endings(&buf[..len], resp.headers.len())?;
    head.head_len = len;
    head.status = resp.code.unwrap_or(0);
    head.minor = resp.version.unwrap_or(1);
    head.reason = Span::of(buf, reason(buf, resp.reason));
    if !(100..=599).contains(&head.status) {
        return Err("invalid response status");
    }
    classify_response(buf, resp.headers, request_was_head, head)?;
    Ok(true)
}

/// The reason phrase as sent. httparse gives an empty one when the phrase has obs-text
/// (bytes from 0x80, which RFC 9112 §4 allows and nginx and HAProxy pass on); then it is the
/// rest of the status line after `HTTP/1.x NNN `.
fn reason<'b>(buf: &'b [u8], parsed: Option<&'b str>) -> &'b [u8] {
    match parsed {
        Some(r) if !r.is_empty() => r.as_bytes(),
        _ => {
            let start = buf
                .iter()
                .position(|&c| c != b'\r' && c != b'\n')
                .unwrap_or(0);
            let line = &buf[start..];
            let line = &line[..memchr::memchr(b'\r', line).unwrap_or(line.len())];
            line.get(13..).unwrap_or(&[])
        }
    }
}

fn classify_response(
    buf: &[u8],
    fields: &[httparse::Header<'_>],
    request_was_head: bool,
    head: &mut ResponseHead,
) -> Result<(), &'static str> {
    let mut f = Framing::default();
    head.headers.clear();
    head.has_date = false;
    for h in fields {
        // httparse has trimmed the value's leading and trailing whitespace.
        let (name, value) = (h.name.as_bytes(), h.value);
        let hop = match name.len() {
            14 if eq(name, "content-length") => {
                f.content_length(value)?;
                true
            }
            17 if eq(name, "transfer-encoding") => {
                f.transfer_encoding(value)?;
                true
            }
            10 if eq(name, "connection") => {
                connection_tokens(value, &mut f.conn);
                true
            }
            // Only a 101 passes Upgrade on (with ringway's own `Connection: upgrade`); on any
            // other response it is an offer for the hop to the upstream (RFC 9110 §7.8).
            7 if eq(name, "upgrade") => head.status != 101,
            4 if eq(name, "date") => {
                head.has_date = true;
                false
            }
            n => is_hop_by_hop(n, name),
        };
        head.headers.push(HeaderRef {
            name: Span::of(buf, name),
            value: Span::of(buf, value),
            hop,
        });
    }
    if f.te && f.length.is_some() {
        return Err("response has both Content-Length and Transfer-Encoding");
    }
    if f.te && !f.chunked_last {
        return Err("response transfer coding is not chunked");
    }
    if f.other_coding {
        return Err("response transfer coding other than chunked");
    }
    head.declared_length = f.length;
    let no_body = request_was_head || head.status < 200 || head.status == 204 || head.status == 304;
    head.body = if no_body {
        BodyKind::None
    } else if f.te {
        BodyKind::Chunked
    } else {
        match f.length {
            Some(0) => BodyKind::None,
            Some(n) => BodyKind::Length(n),
            None => BodyKind::Close,
        }
    };
    head.keep_alive = if head.minor == 1 {
        !f.conn.close
    } else {
        f.conn.keep_alive && !f.conn.close
    };
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; its
    // body is read as chunked, but the connection is not used again.
    if head.body == BodyKind::Close || (f.te && head.minor == 0) {
        head.keep_alive = false;
    }
    if f.conn.names_fields {
        mark_connection_listed(buf, &mut head.headers);
    }
    Ok(())
}

/// RFC 9112 §6.3: Content-Length is 1*DIGIT; lists and signs are malformed here.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + (d - b'0') as u64))
}

fn connection_tokens(v: &[u8], t: &mut ConnTokens) {
    // Nearly every Connection field is one of these two words alone: a length check and a
    // word compare instead of splitting and trimming.
    if eq(v, "keep-alive") {
        t.keep_alive = true;
        return;
    }
    if eq(v, "close") {
        t.close = true;
        return;
    }
    for tok in v.split(|&b| b == b',') {
        let tok = trim(tok);
        if eq(tok, "close") {
            t.close = true;
        } else if eq(tok, "keep-alive") {
            t.keep_alive = true;
        } else if eq(tok, "upgrade") {
            t.upgrade = true;
        } else if !tok.is_empty() {
            t.names_fields = true;
        }
    }
}

/// Fields named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1), whichever `Connection`
/// field names them. `Host` is never dropped: the upstream needs it.
fn mark_connection_listed(buf: &[u8], headers: &mut [HeaderRef]) {
    for i in 0..headers.len() {
        if !eq(headers[i].name.get(buf), "connection") {
            continue;
        }
        let listed = headers[i].value.get(buf);
        for tok in listed.split(|&b| b == b',').map(trim) {
            if tok.is_empty()
                || eq(tok, "close")
                || eq(tok, "keep-alive")
                || eq(tok, "upgrade")
                || eq(tok, "host")
            {
                continue;
            }
            for h in headers.iter_mut() {
                if h.name.get(buf).eq_ignore_ascii_case(tok) {
                    h.hop = true;
                }
            }
        }
    }
}

/// The other hop-by-hop fields (RFC 9110 §7.6.1 and the legacy Proxy-Connection); dispatching
/// on the length first keeps the common, forwarded fields to one integer compare.
fn is_hop_by_hop(len: usize, name: &[u8]) -> bool {
    match len {
        2 => eq(name, "te"),
        7 => eq(name, "trailer"),
        10 => eq(name, "keep-alive"),
        16 => eq(name, "proxy-connection"),
        _ => false,
    }
}

/// Bytes of a reg-name or IPv4 host (RFC 3986: unreserved, sub-delims and '%' escapes).
const REG_NAME_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let extra = b"-._~!$&'()*+,;=%";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// A Host value or authority: `host[:port]` with a reg-name or IPv4 host or a bracketed IPv6
/// literal, a port of digits, and no host-less port (RFC 9110 §4.2.1); empty is allowed (a
/// Host for a target without authority). One table lookup per byte of the host, on every
/// request.
fn valid_host(h: &[u8]) -> bool {
    let (host_ok, port) = if h.first() == Some(&b'[') {
        let Some(end) = h.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &h[1..end];
        let ok = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'%'));
        (ok, &h[end + 1..])
    } else {
        let end = h
            .iter()
            .position(|&b| !REG_NAME_BYTES[b as usize])
            .unwrap_or(h.len());
        (end > 0 || h.is_empty(), &h[end..])
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: HeadLimits = HeadLimits {
        max_head: 16384,
        max_uri: 8192,
        max_headers: 100,
    };

    fn req(raw: &str) -> Result<RequestHead, HeadError> {
        let mut h = RequestHead::default();
        parse_request(raw.as_bytes(), &L, &mut h).map(|done| {
            assert!(done, "partial");
            h
        })
    }

    fn status(raw: &str) -> u16 {
        req(raw).err().map_or(0, |e| e.status())
    }

    #[test]
    fn simple_get() {
        let raw =
            "GET /a?b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n";
        let h = req(raw).unwrap();
        assert_eq!(h.method(raw.as_bytes()), b"GET");
        assert_eq!(h.target.get(raw.as_bytes()), b"/a?b");
        assert_eq!(h.body, BodyKind::None);
        assert!(!h.keep_alive);
        assert_eq!(h.forwarded_for, Some(2));
        assert_eq!(h.head_len, raw.len());
    }

    #[test]
    fn absolute_form_target() {
        let raw = "GET http://Example.com:8080/a?b HTTP/1.1\r\nHost: other\r\n\r\n";
        let h = req(raw).unwrap();
        assert_eq!(h.path(raw.as_bytes()), b"/a?b");
        assert_eq!(h.host.unwrap().get(raw.as_bytes()), b"Example.com:8080");
        assert!(h.headers[0].hop);
        let raw = "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert_eq!(req(raw).unwrap().path(raw.as_bytes()), b"/");
        assert_eq!(
            status("GET http://u@example.com/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET ftp://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            400
        );
        assert_eq!(status("GET example.com/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    }

    #[test]
    fn framing_rules() {
        let h = req("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(h.body, BodyKind::Chunked);
        // ringway re-frames chunked bodies and cannot carry other codings along: 501.
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        let h = req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
        assert_eq!(h.body, BodyKind::Length(5));
        assert_eq!(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            400
        );
        assert_eq!(status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"), 400);
        assert_eq!(
            status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn syntax_rules() {
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nFoo: a\r\n b\r\n\r\n"),
            400
        );
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\nFoo : a\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\nHost: x\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\rFoo: b\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\rFoo: b\nX: y\r\n\r\n"),
            400
        );
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\nFoo: b\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\n\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nFoo: a\0b\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nFoo: a\x01b\r\n\r\n"),
            400
        );
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        // A space in the target or an extra word is a malformed line, not a version problem.
        assert_eq!(status("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status("GET / x HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        // A higher minor version is read as 1.1 (RFC 9110 §2.5), in either direction.
        assert_eq!(req("GET / HTTP/1.2\r\nHost: x\r\n\r\n").unwrap().minor, 1);
        assert_eq!(resp("HTTP/1.9 204 No\r\n\r\n", false).unwrap().minor, 1);
        assert!(resp("HTTP/2.1 204 No\r\n\r\n", false).is_err());
        // A reason phrase with obs-text (here Latin-1) is kept as sent.
        let raw = b"HTTP/1.1 200 Gr\xfc\xdfe\r\nContent-Length: 0\r\n\r\n";
        let mut h = ResponseHead::default();
        assert_eq!(parse_response(raw, 8192, false, &mut h), Ok(true));
        assert_eq!(h.reason.get(raw), b"Gr\xfc\xdfe");
        assert_eq!(status("GET / HTTX/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n"),
            417
        );
        assert!(req("GET / HTTP/1.0\r\n\r\n").is_ok());
    }

    #[test]
    fn counts_bytes() {
        let s = b"a\r\nbb\r\n\n\x8a\x0a\r\r\r\r\r\r\r\r\r\n";
        assert_eq!(
            count_byte(s, b'\n'),
            s.iter().filter(|&&c| c == b'\n').count()
        );
        assert_eq!(
            count_byte(s, b'\r'),
            s.iter().filter(|&&c| c == b'\r').count()
        );
        assert_eq!(count_byte(&[0x8d; 17], b'\r'), 0);
        // More matches per lane than a byte holds.
        assert_eq!(count_byte(&[b'\r'; 5000], b'\r'), 5000);
        // Every length through the block, word and byte paths, with the byte at every offset.
        for len in (0..80).chain([4079, 4080, 4081, 4096, 5000]) {
            for at in (0..len).filter(|at| len < 80 || at % 97 == 0 || at + 1 == len) {
                let mut v = vec![b'a'; len];
                v[at] = b'\r';
                assert_eq!(count_byte(&v, b'\r'), 1, "len {len} at {at}");
            }
        }
    }

    #[test]
    fn limits() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
        assert_eq!(status(&long), 414);
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")),
            431
        );
        let mut h = RequestHead::default();
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}", "a".repeat(17000));
        assert_eq!(
            parse_request(big.as_bytes(), &L, &mut h),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHo", &L, &mut h),
            Ok(false)
        );
    }

    #[test]
    fn hop_by_hop_marked() {
        let raw = "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nX-Ok: 2\r\n\r\n";
        let h = req(raw).unwrap();
        let hops: Vec<bool> = h.headers.iter().map(|x| x.hop).collect();
        assert_eq!(hops, vec![false, true, true, true, false]);
    }

    fn resp(raw: &str, head_req: bool) -> Result<ResponseHead, &'static str> {
        let mut h = ResponseHead::default();
        parse_response(raw.as_bytes(), 8192, head_req, &mut h).map(|_| h)
    }

    #[test]
    fn responses() {
        let h = resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", false).unwrap();
        assert_eq!(
            (h.status, h.body, h.keep_alive),
            (200, BodyKind::Length(3), true)
        );
        let h = resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true).unwrap();
        assert_eq!(h.body, BodyKind::None);
        let h = resp("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!((h.body, h.keep_alive), (BodyKind::Close, false));
        let h = resp(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.body, BodyKind::None);
        assert!(resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false
        )
        .is_err());
        // RFC 9112 §6.1: chunked from an HTTP/1.0 upstream is decoded, then the connection
        // closes, whatever it asked for.
        let h = resp(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((h.body, h.keep_alive), (BodyKind::Chunked, false));
        let h = resp(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((h.body, h.keep_alive), (BodyKind::Length(3), true));
        assert!(resp("HTTP/1.1 2000 OK\r\n\r\n", false).is_err());
        assert!(resp("garbage\r\n\r\n", false).is_err());
        assert!(resp("HTTP/1.1 200 OK\nContent-Length: 3\n\n", false).is_err());
        assert!(resp("HTTP/1.1 200 O\rK\r\nX: 1\n\r\n", false).is_err());
        assert!(resp("HTTP/1.1 200 OK\r\nX: 1\n\r\n", false).is_err());
    }

    #[test]
    fn folded_compare() {
        assert!(eq(b"Content-Length", "content-length"));
        assert!(eq(b"CONTENT-LENGTH", "content-length"));
        assert!(eq(b"content-lengtH", "content-length"));
        assert!(eq(b"HoSt", "host"));
        assert!(eq(b"Transfer-Encoding", "transfer-encoding"));
        assert!(eq(b"100-Continue", "100-continue"));
        assert!(!eq(b"content_length", "content-length"));
        assert!(!eq(b"content-lengtx", "content-length"));
        assert!(!eq(b"xontent-length", "content-length"));
        assert!(!eq(b"content-length ", "content-length"));
        assert!(!eq(b"hosts", "host"));
    }

    #[test]
    fn host_bytes() {
        assert!(valid_host(b"example.com:8080"));
        assert!(valid_host(b"[::1]:80"));
        assert!(valid_host(b"a-b_c~d%20"));
        assert!(!valid_host(b"a b"));
        assert!(!valid_host(b"a/b"));
        assert!(!valid_host(b"a@b"));
        assert!(!valid_host(b"\x80"));
    }
}
