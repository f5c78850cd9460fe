//! The built-in backend, driven through the shared test client (which this
//! also proves: Content-Length, chunked, close-delimited, HEAD, pipelining).

mod common;

use std::time::{Duration, Instant};

use common::{curl, Conn};
use ringway::backend::{pattern, Backend, BackendOptions};

fn backend() -> Backend {
    Backend::start(BackendOptions::default()).expect("start backend")
}

#[test]
fn default_endpoint_keeps_alive() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    for _ in 0..3 {
        let r = c.request(b"GET /anything?q=1 HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.body, vec![b'x'; 50]);
    }
    assert_eq!((b.accepted(), b.requests()), (1, 3));
}

#[test]
fn fixed_size_option_and_threads() {
    let opts = BackendOptions {
        fixed_size: 70_000,
        threads: 2,
        ..BackendOptions::default()
    };
    let b = Backend::start(opts).unwrap();
    for _ in 0..4 {
        let r = Conn::connect(b.addr).request(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r.body.len(), 70_000);
    }
    assert_eq!(b.accepted(), 4);
}

#[test]
fn size_streams_large_bodies() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    let n = 16 * 1024 * 1024 + 3;
    let r = c.request(format!("GET /size/{n} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(r.header("content-length"), Some(n.to_string().as_str()));
    assert!(r.body == pattern(n), "pattern mismatch");
    let r = c.request(b"GET /size/0 HTTP/1.1\r\n\r\n");
    assert!(r.body.is_empty());
}

#[test]
fn chunked_endpoint() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    let n = 100_000;
    let r = c.request(format!("GET /chunked/{n} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    assert!(r.body == pattern(n));
    // HTTP/1.0 cannot take chunked: close-delimited instead.
    let mut c = Conn::connect(b.addr);
    let r = c.request(b"GET /chunked/30 HTTP/1.0\r\n\r\n");
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.body, pattern(30));
}

#[test]
fn echo_content_length_streams_big_bodies() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    let body = pattern(5 * 1024 * 1024);
    let head = format!(
        "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // Write from another thread: the backend streams the echo while we still send.
    let mut writer = c.stream.try_clone().unwrap();
    let sent = body.clone();
    let t = std::thread::spawn(move || {
        common::send(&mut writer, head.as_bytes());
        common::send(&mut writer, &sent);
    });
    let r = c.read_response();
    t.join().unwrap();
    assert_eq!(
        r.header("x-echo-bytes"),
        Some(body.len().to_string().as_str())
    );
    assert!(r.body == body);
    let r = c.request(b"POST /echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, 0));
}

#[test]
fn echo_chunked_request_gets_chunked_response() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    let raw = b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let r = c.request(raw);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("x-echo-bytes"), None);
    assert_eq!(r.body_str(), "hello world");
}

#[test]
fn expect_continue_comes_first() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    c.send(b"PUT /echo HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.read_response().status, 100);
    c.send(b"ping");
    let r = c.read_response();
    assert_eq!((r.status, r.body_str()), (200, "ping"));
}

#[test]
fn status_codes() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    let r = c.request(b"GET /status/404 HTTP/1.1\r\n\r\n");
    assert_eq!((r.status, r.body_str()), (404, "{\"status\":404}"));
    let r = c.request(b"GET /status/204 HTTP/1.1\r\n\r\n");
    assert_eq!((r.status, r.header("content-length")), (204, None));
    let r = c.request(b"GET /status/304 HTTP/1.1\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = c.request(b"GET /status/503 HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 503);
    let r = c.request(b"GET /status/abc HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400);
}

#[test]
fn delay_waits() {
    let b = backend();
    let started = Instant::now();
    let r = Conn::connect(b.addr).request(b"GET /delay/150 HTTP/1.1\r\n\r\n");
    assert_eq!(r.body.len(), 50);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[test]
fn headers_returns_the_head_verbatim() {
    let b = backend();
    let raw = "GET /headers?a=b HTTP/1.1\r\nHost: example\r\nX-Forwarded-For: 10.0.0.1\r\nVia: 1.1 ringway\r\n\r\n";
    let r = Conn::connect(b.addr).request(raw.as_bytes());
    assert_eq!(r.body_str(), raw);
}

#[test]
fn sse_is_close_delimited() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    let started = Instant::now();
    let r = c.request(b"GET /sse?count=3&interval_ms=20 HTTP/1.1\r\n\r\n");
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("content-length"), None);
    let want = "id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n";
    assert_eq!(r.body_str(), want);
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[test]
fn head_has_headers_but_no_body() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    let r = c.request(b"HEAD /size/1000 HTTP/1.1\r\n\r\n");
    assert_eq!(
        (r.header("content-length"), r.body.len()),
        (Some("1000"), 0)
    );
    // The connection is still in sync: the next response parses.
    let r = c.request(b"GET /size/3 HTTP/1.1\r\n\r\n");
    assert_eq!(r.body, b"abc");
}

#[test]
fn pipelined_responses_in_order() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    c.send(b"GET /size/5 HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\nGET /chunked/7 HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /status/202 HTTP/1.1\r\n\r\n");
    assert_eq!(c.read_response().body, pattern(5));
    assert_eq!(
        c.read_response_for_head().header("content-length"),
        Some("50")
    );
    assert_eq!(c.read_response().body, pattern(7));
    assert_eq!(c.read_response().body, b"hi");
    assert_eq!(c.read_response().status, 202);
    assert_eq!(b.requests(), 5);
}

#[test]
fn connection_close_and_http10() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    let r = c.request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed(Duration::from_secs(2)));

    let mut c = Conn::connect(b.addr);
    c.request(b"GET / HTTP/1.0\r\n\r\n");
    assert!(c.is_closed(Duration::from_secs(2)));

    let mut c = Conn::connect(b.addr);
    let r = c.request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert!(!c.is_closed(Duration::from_millis(100)));
    assert_eq!(c.request(b"GET / HTTP/1.0\r\n\r\n").status, 200);
}

#[test]
fn garbage_is_rejected_and_closed() {
    let b = backend();
    let mut c = Conn::connect(b.addr);
    let r = c.request(b"\x00\x01garbage\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(c.is_closed(Duration::from_secs(2)));
    let mut c = Conn::connect(b.addr);
    let smuggle = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(c.request(smuggle).status, 400);
}

#[test]
fn curl_sees_the_same() {
    let b = backend();
    let url = format!("http://{}/size/26", b.addr);
    let out = curl(&[&url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, pattern(26));
    let url = format!("http://{}/echo", b.addr);
    let out = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "streamed",
        &url,
    ]);
    assert_eq!(out.stdout, b"streamed");
}

#[test]
fn stop_closes_the_port() {
    let b = backend();
    let addr = b.addr;
    Conn::connect(addr).request(b"GET / HTTP/1.1\r\n\r\n");
    b.stop();
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}

#[test]
fn stop_drops_open_connections() {
    let b = backend();
    let mut idle = Conn::connect(b.addr);
    idle.request(b"GET / HTTP/1.1\r\n\r\n");
    let mut sse = Conn::connect(b.addr);
    sse.send(b"GET /sse?count=1000&interval_ms=50 HTTP/1.1\r\n\r\n");
    std::thread::sleep(Duration::from_millis(50));
    b.stop();
    assert!(idle.is_closed(Duration::from_secs(2)));
    assert!(sse.is_closed(Duration::from_secs(2)));
}

#[test]
fn config_helpers_build_valid_configs() {
    let backend: std::net::SocketAddr = "127.0.0.1:9000".parse().unwrap();
    let port = common::free_port();
    let text = common::config(port, backend, "drain_timeout = \"1s\"");
    ringway::config::load_str(&text, "test.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        common::first_address(&text),
        Some(([127, 0, 0, 1], port).into())
    );
    let text = common::config_with(port, backend, "", "max_idle = 4", "strip_prefix = true");
    ringway::config::load_str(&text, "test.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
}

/// Exercises the `Gateway` helper's failure path: a refused config must come
/// back as an error carrying the log, quickly, never a hang.
#[test]
fn gateway_helper_reports_an_early_exit() {
    let port = common::free_port();
    let text = common::config(port, "127.0.0.1:9".parse().unwrap(), "no_such_key = 1");
    let started = Instant::now();
    let err = common::Gateway::try_start(&text)
        .err()
        .expect("bad config must not start");
    assert!(err.contains("exited early"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
