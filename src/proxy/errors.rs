//! Answers ringway gives itself: short JSON bodies with the status repeated.

use std::io::Write;

use crate::http::date::push_date_line;
use crate::http::reason_phrase;

/// Writes a complete error response into `out`; returns the length of the body written (for
/// the access log). An answer to a HEAD request (`head`) ends with its head (RFC 9110 §9.3.2);
/// its Content-Length still says what a GET would have had.
pub fn error_response(
    out: &mut Vec<u8>,
    status: u16,
    message: &str,
    close: bool,
    head: bool,
) -> usize {
    error_response_with(out, status, message, close, head, "")
}

/// Like [`error_response`], with `extra` header lines (each ending in CRLF), such as the
/// `Allow` a 405 must carry.
pub fn error_response_with(
    out: &mut Vec<u8>,
    status: u16,
    message: &str,
    close: bool,
    head: bool,
    extra: &str,
) -> usize {
    out.clear();
    let body_len = r#"{"error":"","status":}"#.len() + json_len(message) + 3;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {body_len}\r\n{extra}{}",
        reason_phrase(status),
        if close { "connection: close\r\n" } else { "" },
    );
    push_date_line(out);
    out.extend_from_slice(b"\r\n");
    if head {
        return 0;
    }
    out.extend_from_slice(b"{\"error\":\"");
    push_json(out, message);
    let _ = write!(out, "\",\"status\":{status}}}");
    body_len
}

fn json_len(s: &str) -> usize {
    let mut v = Vec::new();
    push_json(&mut v, s);
    v.len()
}

fn push_json(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn body_is_json_with_right_length() {
        let mut out = Vec::new();
        super::error_response(&mut out, 502, "upstream \"x\" refused", true, false);
        let s = String::from_utf8(out).unwrap();
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], 502);
        assert_eq!(v["error"], "upstream \"x\" refused");
    }
}
