//! Request smuggling defences and request limits: each malformed or oversized request gets its
//! status, the connection is closed after it, and another connection is unaffected.

mod common;

use std::time::Duration;

use common::{backend, config, free_port, gateway_for, get, send_in_thread, Gateway};
use ringway::backend::{pattern, Backend};

fn setup(top: &str) -> (Backend, Gateway) {
    let b = backend();
    let gw = Gateway::start(&config(free_port(), b.addr, top));
    (b, gw)
}

/// Sends `raw`, expects `status` then a close; then checks a fresh connection still works.
fn rejected(gw: &Gateway, raw: &[u8], status: u16) {
    let mut c = gw.conn();
    // A well-formed request pipelined behind the bad one must not be answered.
    let mut req = raw.to_vec();
    req.extend_from_slice(&get("/size/5"));
    c.send(&req);
    let r = c.read_response();
    let what = String::from_utf8_lossy(raw);
    assert_eq!(r.status, status, "{what:?}: {r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{what:?}");
    assert!(
        c.is_closed(Duration::from_secs(3)),
        "{what:?}: connection left open"
    );
    assert!(
        !String::from_utf8_lossy(c.buffered()).contains("HTTP/1.1 200"),
        "{what:?}: the smuggled request was answered: {:?}",
        String::from_utf8_lossy(c.buffered())
    );
    let ok = gw.conn().request(&get("/size/5"));
    assert_eq!(
        (ok.status, ok.body),
        (200, pattern(5)),
        "another connection after {what:?}"
    );
}

#[test]
fn framing_conflicts_are_400() {
    let (_b, gw) = setup("");
    let cases: &[&[u8]] = &[
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for raw in cases {
        rejected(&gw, raw, 400);
    }
}

#[test]
fn malformed_heads_are_400() {
    let (_b, gw) = setup("");
    let cases: &[&[u8]] = &[
        // obs-fold
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: one\r\n two\r\n\r\n",
        // whitespace before the colon
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length : 0\r\n\r\n",
        // bare LF, bare CR
        b"GET / HTTP/1.1\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\rX-A: b\r\n\r\n",
        // the same behind empty lines, which the parser skips (the first once hid a bare LF)
        b"\r\nGET / HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: t\nX-A: b\nX-B: c\r\n\r\n",
        b"\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
        // NUL and other control bytes in a value
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x7fb\r\n\r\n",
        // Host missing on 1.1, or twice
        b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
        // Host values of the wrong shape (RFC 9112 §3.2: 400), and an absolute-form target
        // with an empty host (RFC 9110 §4.2.1)
        b"GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: :80\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x:abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a]b[\r\n\r\n",
        b"GET http://:80/p HTTP/1.1\r\nHost: t\r\n\r\n",
        // a fragment in the target (no request target has one)
        b"GET /a#frag HTTP/1.1\r\nHost: t\r\n\r\n",
        // garbage version
        b"GET / HTTP/1.x\r\nHost: t\r\n\r\n",
        b"GET / FOO\r\nHost: t\r\n\r\n",
    ];
    for raw in cases {
        rejected(&gw, raw, 400);
    }
}

/// RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) before the request
/// line, as some clients send one after a POST body. It is not forwarded.
#[test]
fn empty_lines_before_a_request_are_ignored() {
    let (_b, gw) = setup("");
    let mut c = gw.conn();
    let r = c.request(b"\r\nGET /headers HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with(b"GET /headers HTTP/1.1\r\n"), "{r:?}");
    let r = c.request(b"\r\n\r\nGET /size/3 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body), (200, pattern(3)));
}

/// CONNECT is not a gateway's business: 501, whatever its target (a 2xx to it would start a
/// tunnel on the client's side that the relay would not provide).
#[test]
fn connect_is_501() {
    let (_b, gw) = setup("");
    rejected(&gw, b"CONNECT /p HTTP/1.1\r\nHost: t\r\n\r\n", 501);
    rejected(&gw, b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 501);
}

/// Well-formed Host values of every shape still pass.
#[test]
fn host_values_of_every_valid_shape_are_accepted() {
    let (_b, gw) = setup("");
    let mut c = gw.conn();
    for host in [
        "t",
        "t:8080",
        "t:",
        "10.0.0.1:80",
        "[::1]",
        "[::1]:8080",
        "a-b.example",
    ] {
        let r = c.request(format!("GET /size/1 HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        assert_eq!(r.status, 200, "{host}");
    }
}

/// Another major version is a 505; a higher 1.x minor is served as 1.1 (RFC 9110 §2.5, as
/// nginx and HAProxy do); a request line with a space in its target or an extra word is
/// malformed (400), whatever it ends with.
#[test]
fn other_http_versions_are_505_and_higher_minors_are_11() {
    let (_b, gw) = setup("");
    rejected(&gw, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
    rejected(&gw, b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    rejected(&gw, b"GET / x HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    let mut c = gw.conn();
    let r = c.request(b"GET /size/3 HTTP/1.2\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, 3));
    assert_eq!(c.request(&get("/size/2")).status, 200, "kept alive as 1.1");
}

/// A bad chunked body may be detected after the head (and part of the body) went upstream:
/// the client gets a 400 or a close, never a hang, and nothing behind it is answered.
fn bad_chunked(gw: &Gateway, body: &[u8]) {
    let mut c = gw.conn();
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(body);
    req.extend_from_slice(&get("/size/5"));
    c.send(&req);
    assert!(
        c.is_closed(Duration::from_secs(3)),
        "{body:?}: not closed (hang)"
    );
    let text = String::from_utf8_lossy(c.buffered());
    assert!(
        text.is_empty() || text.contains("HTTP/1.1 400"),
        "{body:?}: expected 400 or a close, got {text:?}"
    );
    assert!(
        !text.contains("\r\n\r\nabcde"),
        "smuggled request answered: {text:?}"
    );
    let ok = gw.conn().request(&get("/size/5"));
    assert_eq!(ok.status, 200);
}

#[test]
fn bad_chunked_bodies_are_400_or_closed() {
    let (_b, gw) = setup("");
    for body in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\nhello\n0\n\n",
        b"5\r\nhello\n0\r\n\r\n",
        // A size line with more than whitespace and `;ext` after the size (`5 6`: which?).
        b"5 6\r\nhello\r\n0\r\n\r\n",
        b"5 junk\r\nhello\r\n0\r\n\r\n",
    ] {
        bad_chunked(&gw, body);
    }
}

#[test]
fn head_and_uri_and_header_count_limits() {
    let (_b, gw) =
        setup("[limits]\nmax_head_bytes = \"4KiB\"\nmax_uri_bytes = 1024\nmax_headers = 20");
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(5000)
    );
    rejected(&gw, big_header.as_bytes(), 431);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "u".repeat(2000));
    rejected(&gw, long_uri.as_bytes(), 414);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    rejected(&gw, many.as_bytes(), 431);
    // Just inside every limit is fine.
    let mut fine = format!("GET /{} HTTP/1.1\r\nHost: t\r\n", "u".repeat(1000));
    for i in 0..15 {
        fine.push_str(&format!("X-H{i}: v\r\n"));
    }
    fine.push_str("\r\n");
    assert_eq!(gw.conn().request(fine.as_bytes()).status, 200);
}

#[test]
fn head_too_large_without_end_is_431() {
    // The head never ends: the limit must trip on the partial head, not wait for the timeout.
    let (_b, gw) = setup("[limits]\nmax_head_bytes = \"4KiB\"");
    let mut c = gw.conn();
    c.send(format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}", "a".repeat(8000)).as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 431);
    assert!(c.is_closed(Duration::from_secs(3)));
}

#[test]
fn body_over_limit_is_413() {
    let (b, gw) = setup("[limits]\nmax_body_bytes = 1000");
    let body = "x".repeat(1001);
    rejected(
        &gw,
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n{body}").as_bytes(),
        413,
    );
    let mut chunked =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(&common::chunked(body.as_bytes(), 300));
    let mut c = gw.conn();
    c.send(&chunked);
    assert!(
        c.is_closed(Duration::from_secs(3)),
        "over-limit chunked body: not closed"
    );
    let text = String::from_utf8_lossy(c.buffered());
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 413"),
        "{text:?}"
    );
    // Exactly at the limit passes.
    let r = gw.conn().request(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{}",
            &body[..1000]
        )
        .as_bytes(),
    );
    assert_eq!((r.status, r.body.len()), (200, 1000));
    let _ = b;
}

/// The 413 reaches a client still sending a large body (it is not lost to a reset).
#[test]
fn body_over_limit_413_is_readable_while_the_body_streams() {
    let b = backend();
    let gw = Gateway::start(&config(
        free_port(),
        b.addr,
        "[limits]\nmax_body_bytes = 1000",
    ));
    for _ in 0..5 {
        let mut c = gw.conn();
        let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000\r\n\r\n".to_vec();
        req.extend_from_slice(&vec![b'x'; 4_000_000]);
        let w = send_in_thread(&c.stream, req);
        let r = c.read_response();
        assert_eq!(r.status, 413);
        let _ = w.join();
    }
}

/// A 400 reaches a client that keeps sending after its bad head.
#[test]
fn reject_with_more_requests_pending_is_readable() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    for _ in 0..5 {
        let mut c = gw.conn();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n");
        std::thread::sleep(Duration::from_millis(20));
        let mut more = Vec::new();
        for _ in 0..100 {
            more.extend_from_slice(&get("/x"));
        }
        let _ = std::io::Write::write_all(&mut c.stream, &more);
        let r = c.read_response();
        assert_eq!(r.status, 400);
    }
}

/// max_body_bytes holds for a chunked body that arrives after its head, not only for the part
/// read together with the head. The echo backend answers before the body arrives, and ringway
/// relays both directions at once, so the client may already have a 200 head: what matters is
/// that the over-limit body never completes — a 413, or a response cut off by a close.
#[test]
fn streamed_chunked_body_over_limit_is_cut() {
    let (_b, gw) = setup("[limits]\nmax_body_bytes = 1000");
    let mut c = gw.conn();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    std::thread::sleep(Duration::from_millis(100));
    let body = common::chunked(&pattern(5000), 500);
    let _ = std::io::Write::write_all(&mut c.stream, &body);
    assert!(
        c.is_closed(Duration::from_secs(3)),
        "over-limit streamed body: not closed"
    );
    let text = String::from_utf8_lossy(c.buffered()).into_owned();
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 413") || text.starts_with("HTTP/1.1 200"),
        "{text:?}"
    );
    if text.starts_with("HTTP/1.1 200") {
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "a 5000-byte body passed a 1000-byte limit and the echo completed"
        );
        let echoed = text.matches(|ch: char| ch.is_ascii_lowercase()).count();
        assert!(
            echoed < 5000,
            "all 5000 body bytes were echoed past the limit"
        );
    }
}

/// A transfer coding ringway does not decode (gzip before chunked) must not be silently
/// dropped: the upstream would take gzip bytes for the body. RFC 9112 §6.1: 501.
#[test]
fn unknown_transfer_coding_in_request_is_501() {
    let (_b, gw) = setup("");
    rejected(
        &gw,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        501,
    );
    rejected(
        &gw,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        501,
    );
}

/// Paths are normalised before routing and forwarded normalised, so a dot segment or a doubled
/// slash cannot reach one route's upstream through another route's prefix; percent-encoded dot
/// segments are refused.
#[test]
fn paths_are_routed_and_forwarded_normalised() {
    let b = backend();
    let dead = format!("127.0.0.1:{}", free_port());
    let cfg = format!(
        "workers = 1\nhost_check = \"off\"\n[[listeners]]\naddress = \"127.0.0.1:{}\"\n\
         [[upstreams]]\nname = \"open\"\nservers = [\"{}\"]\n\
         [[upstreams]]\nname = \"other\"\nservers = [\"{dead}\"]\n\
         [[routes]]\npath_prefix = \"/public\"\nupstream = \"open\"\nstrip_prefix = true\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"other\"\n",
        free_port(),
        b.addr
    );
    let gw = Gateway::start(&cfg);
    let mut c = gw.conn();
    for path in [
        "/public/./headers",
        "//public//headers",
        "/public/x/../headers?a=/../b",
        // Escapes of unreserved characters name the same path (RFC 3986 §6.2.2.2).
        "/%70ublic/headers",
        "/pub%6c%69c/%68eaders",
    ] {
        let r = c.request(&get(path));
        assert_eq!(r.status, 200, "{path}");
        let seen = r.body_str();
        assert!(
            seen.starts_with("GET /headers"),
            "{path}: upstream saw {seen}"
        );
        let forwarded_path = seen.split([' ', '?']).nth(1).unwrap_or("");
        assert_eq!(forwarded_path, "/headers", "{path}: upstream saw {seen}");
    }
    // Out of the public prefix: the other route answers (its upstream is down: 502).
    assert_eq!(c.request(&get("/public/../headers")).status, 502);
    rejected_only(&gw, &get("/public/%2e%2e/headers"), 400);
    // A dot segment behind an encoded slash: an upstream decoding %2F late would resolve it.
    rejected_only(&gw, &get("/public/..%2fheaders"), 400);
    rejected_only(&gw, &get("/public/%2E%2E%2Fheaders"), 400);
    rejected_only(&gw, &get("/public/%zz"), 400);
}

/// A route's method rule cannot be bypassed by spelling its prefix with escapes: `/%61dmin` is
/// `/admin`, routed (405 here) and forwarded as such; other escapes are forwarded with
/// upper-case hex, so a prefix written with them matches either case.
#[test]
fn escaped_paths_cannot_bypass_a_route() {
    let b = backend();
    let cfg = format!(
        "workers = 1\nhost_check = \"off\"\n[[listeners]]\naddress = \"127.0.0.1:{}\"\n\
         [[upstreams]]\nname = \"b\"\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/admin\"\nmethods = [\"GET\"]\nupstream = \"b\"\nstrip_prefix = true\n\
         [[routes]]\npath_prefix = \"/caf%C3%A9\"\nmethods = [\"GET\"]\nupstream = \"b\"\nstrip_prefix = true\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"b\"\n",
        free_port(),
        b.addr
    );
    let gw = Gateway::start(&cfg);
    let mut c = gw.conn();
    for path in [
        "/admin/users/1",
        "/%61dmin/users/1",
        "/%61%64%6d%69%6e/users/1",
        "/adm%69n/users/1",
        "/caf%c3%a9/x",
    ] {
        let r = c.request(format!("DELETE {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(r.status, 405, "{path}: {r:?}");
    }
    // An encoded slash or a backslash that would move the request to another route if an
    // upstream decoded it is refused; one that stays within its route is forwarded as sent.
    for path in [
        "/admin%2Fusers",
        "/admin%5cusers",
        "/admin\\users",
        "/%2Fadmin",
        "/%5Cadmin/x",
        "/\\admin",
        // `;parameters` (Tomcat, Jetty, Spring drop them; `..;` resolves as `..`).
        "/admin;x",
        "/x/..;/admin",
        "/;/admin",
    ] {
        let r = gw
            .conn()
            .request(format!("DELETE {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(r.status, 400, "{path}: {r:?}");
    }
    let r = c.request(&get("/files/a%2fb"));
    assert_eq!(r.status, 200, "{r:?}");
    // Raw non-ASCII in a path would route apart from its escaped spelling: 400.
    let r = gw
        .conn()
        .request(b"DELETE /caf\xc3\xa9/x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 400, "{r:?}");
    // Routed by the decoded prefix (stripped here), the rest forwarded decoded too.
    for path in ["/%61dmin/h%65aders", "/caf%c3%a9/headers"] {
        let r = c.request(&get(path));
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.body_str().starts_with("GET /headers "),
            "{path}: {}",
            r.body_str()
        );
    }
}

/// Like `rejected`, for a gateway whose other routes cannot serve the follow-up check.
fn rejected_only(gw: &Gateway, raw: &[u8], status: u16) {
    let mut c = gw.conn();
    let r = c.request(raw);
    assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(raw));
    assert!(c.is_closed(Duration::from_secs(3)));
}
