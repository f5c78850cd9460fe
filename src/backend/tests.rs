//! Light end-to-end checks with blocking std clients; `tests/backend.rs` covers more.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{pattern, Backend, BackendOptions};

fn start() -> Backend {
    Backend::start(BackendOptions::default()).expect("backend starts")
}

fn connect(b: &Backend) -> TcpStream {
    let s = TcpStream::connect(b.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until `want` bytes arrived or the peer closed (bounded by the read timeout).
fn read_n(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    read_n(s, usize::MAX)
}

#[test]
fn default_endpoint_and_counters() {
    let b = start();
    let mut s = connect(&b);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = String::from_utf8(read_to_close(&mut s)).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Length: 50\r\n"));
    assert!(text.ends_with(&"x".repeat(50)));
    assert_eq!((b.accepted(), b.requests()), (1, 1));
    b.stop();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let b = start();
    let mut s = connect(&b);
    let reqs = b"GET /size/3 HTTP/1.1\r\n\r\nGET /status/201 HTTP/1.1\r\n\r\nGET /size/2 HTTP/1.1\r\nConnection: close\r\n\r\n";
    s.write_all(reqs).unwrap();
    let text = String::from_utf8(read_to_close(&mut s)).unwrap();
    let first = text.find("abc").unwrap();
    let second = text.find("{\"status\":201}").unwrap();
    let third = text.rfind("\r\n\r\nab").unwrap();
    assert!(first < second && second < third, "{text}");
    assert_eq!(b.requests(), 3);
}

#[test]
fn echo_chunked_and_continue() {
    let b = start();
    let mut s = connect(&b);
    let req = "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    s.write_all(req.as_bytes()).unwrap();
    // The 100 arrives before any body byte is sent (the final head may follow it at once).
    let mut all = read_n(&mut s, 25);
    assert!(all.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
    s.write_all(b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n")
        .unwrap();
    all.extend(read_to_close(&mut s));
    let text = String::from_utf8(all).unwrap();
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
        "{text}"
    );
}

#[test]
fn large_size_body_streams_intact() {
    let b = start();
    let mut s = connect(&b);
    let n = 3 * 1024 * 1024 + 7;
    s.write_all(format!("GET /size/{n} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let all = read_to_close(&mut s);
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&all[split..], &pattern(n)[..]);
}

#[test]
fn garbage_gets_400_and_close() {
    let b = start();
    let mut s = connect(&b);
    s.write_all(b"NOT HTTP AT ALL\x01\r\n\r\n").unwrap();
    let text = String::from_utf8_lossy(&read_to_close(&mut s)).into_owned();
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
}

#[test]
fn stop_returns_promptly_with_idle_connections() {
    let opts = BackendOptions {
        threads: 2,
        ..BackendOptions::default()
    };
    let b = Backend::start(opts).unwrap();
    let _idle = connect(&b);
    let started = Instant::now();
    b.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
}
