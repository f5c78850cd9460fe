//! HTTP/1.1 framing, strict enough to stop request smuggling (RFC 9112 §6): request and response
//! heads ([`head`]), body framing ([`body`], [`chunked`]) and the errors a client or upstream
//! earns. Nothing here knows about routing, upstreams or sockets.

pub mod body;
pub mod chunked;
pub mod date;
pub mod head;
pub mod path;

pub use body::BodyKind;
pub use chunked::{push_size_line, ChunkedDecoder, ChunkedOutput, LAST_CHUNK};
pub use head::{parse_request, parse_response, HeaderRef, RequestHead, ResponseHead};

/// Why a head was rejected; maps to the status the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed syntax or framing → 400 (502 for upstream responses).
    Bad(&'static str),
    /// Head larger than the limit → 431.
    TooLarge,
    /// Too many header fields → 431.
    TooManyHeaders,
    /// Request target longer than the limit → 414.
    UriTooLong,
    /// HTTP version other than 1.0/1.1 → 505.
    Version,
    /// An `Expect` other than `100-continue` → 417.
    Expectation,
    /// A transfer coding besides chunked, which ringway cannot decode or pass on → 501.
    UnknownCoding,
    /// CONNECT: a gateway to APIs does not open tunnels to arbitrary hosts → 501.
    Connect,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::Bad(_) => 400,
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
            HeadError::UriTooLong => 414,
            HeadError::Version => 505,
            HeadError::Expectation => 417,
            HeadError::UnknownCoding | HeadError::Connect => 501,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            HeadError::Bad(why) => why,
            HeadError::TooLarge => "request head too large",
            HeadError::TooManyHeaders => "too many header fields",
            HeadError::UriTooLong => "request target too long",
            HeadError::Version => "HTTP version not supported",
            HeadError::Expectation => "unsupported expectation",
            HeadError::UnknownCoding => "transfer coding not implemented",
            HeadError::Connect => "CONNECT not implemented",
        }
    }
}

/// Reason phrase for the statuses ringway itself produces or rewrites.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
