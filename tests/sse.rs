//! Server-sent events and other streamed responses through the gateway: events arrive one by
//! one as the upstream writes them (no batching), the response timeout does not cut a long
//! stream but the stream idle timeout cuts a silent one, and a client that leaves releases
//! the upstream at once.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{config_with, free_port, read_request_head, Conn, Gateway, RawConn};
use ringway::backend::{Backend, BackendOptions};

fn gateway_to(up: SocketAddr, route_extra: &str) -> Gateway {
    Gateway::start(&config_with(free_port(), up, "", "", route_extra))
}

/// Reads a response head and then events (`\n\n`-terminated), recording when each arrived.
/// A stream the upstream delimits by its close reaches an HTTP/1.1 client chunked.
struct EventReader {
    conn: RawConn,
    /// Body bytes (chunk framing removed) not yet returned as events.
    data: Vec<u8>,
}

impl EventReader {
    fn open(addr: SocketAddr, target: &str) -> (EventReader, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            format!("GET {target} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut conn = RawConn::over(s);
        let head = conn.read_head().expect("response head");
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        let r = EventReader {
            conn,
            data: Vec::new(),
        };
        (r, head)
    }

    /// The next event's text and arrival time; None when the stream ends first.
    fn event(&mut self) -> Option<(String, Instant)> {
        loop {
            if let Some(i) = self.data.windows(2).position(|w| w == b"\n\n") {
                let e: Vec<u8> = self.data.drain(..i + 2).collect();
                return Some((String::from_utf8(e).unwrap(), Instant::now()));
            }
            let line = self.conn.read_line()?;
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            if size == 0 {
                return None;
            }
            let chunk = self.conn.read_body(size)?;
            self.data.extend_from_slice(&chunk);
            assert_eq!(self.conn.read_body(2)?, b"\r\n");
        }
    }
}

#[test]
fn events_arrive_in_order_one_by_one() {
    let b = Backend::start(BackendOptions::default()).unwrap();
    let gw = gateway_to(b.addr, "");
    let (mut r, head) = EventReader::open(gw.addr, "/sse?count=6&interval_ms=150");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    let mut times = Vec::new();
    for k in 1..=6 {
        let (text, at) = r.event().unwrap_or_else(|| panic!("event {k} missing"));
        assert_eq!(text, format!("id: {k}\ndata: event {k}\n\n"));
        times.push(at);
    }
    // Spaced as written: a proxy that buffered would deliver them in bursts.
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(100) && gap < Duration::from_millis(400),
            "events batched or delayed: gap {gap:?}"
        );
    }
    assert!(r.event().is_none(), "stream ends with the upstream");
}

#[test]
fn long_stream_outlives_response_timeout() {
    let b = Backend::start(BackendOptions::default()).unwrap();
    let gw = gateway_to(
        b.addr,
        "response_timeout = \"250ms\"\nstream_idle_timeout = \"3s\"",
    );
    let (mut r, _) = EventReader::open(gw.addr, "/sse?count=4&interval_ms=500");
    for k in 1..=4 {
        let (text, _) = r.event().unwrap_or_else(|| panic!("event {k} cut off"));
        assert_eq!(text, format!("id: {k}\ndata: event {k}\n\n"));
    }
}

#[test]
fn silent_stream_is_cut_by_stream_idle_timeout() {
    let b = Backend::start(BackendOptions::default()).unwrap();
    let gw = gateway_to(b.addr, "stream_idle_timeout = \"600ms\"");
    let (mut r, _) = EventReader::open(gw.addr, "/sse?count=2&interval_ms=3000");
    let (_, first) = r.event().expect("first event");
    assert!(
        r.event().is_none(),
        "the second event comes after the idle timeout"
    );
    let cut = first.elapsed();
    assert!(
        cut >= Duration::from_millis(500) && cut < Duration::from_millis(1500),
        "cut after {cut:?}, expected ~600 ms"
    );
}

/// An upstream that answers one request with a stream head and one event, then stays silent
/// and reports how long after that the gateway closed its connection.
fn silent_stream_upstream(
    head: &'static str,
    event: &'static str,
) -> (SocketAddr, mpsc::Receiver<Duration>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        read_request_head(&mut s);
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(event.as_bytes()).unwrap();
        let sent = Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => tx.send(sent.elapsed()).unwrap(),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                tx.send(sent.elapsed()).unwrap()
            }
            _ => {} // timed out: the gateway kept the upstream
        }
    });
    (addr, rx)
}

fn client_leaves_after_first_event(head: &'static str, event: &'static str, relay: &str) {
    let (up, rx) = silent_stream_upstream(head, event);
    let gw = gateway_to(up, &format!("relay = \"{relay}\""));
    let mut c = gw.conn();
    c.send(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut got = Vec::new();
    while !got.windows(11).any(|w| w == b"data: one\n\n") {
        let mut buf = [0u8; 1024];
        let n = c.stream.read(&mut buf).expect("event");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let left = Instant::now();
    drop(c);
    rx.recv_timeout(Duration::from_secs(3))
        .unwrap_or_else(|_| panic!("{relay}: upstream still open 3 s after the client left"));
    let took = left.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "{relay}: upstream released after {took:?}"
    );
}

#[test]
fn client_disconnect_releases_upstream_promptly() {
    for relay in ["auto", "splice", "copy"] {
        // Close-delimited event stream.
        client_leaves_after_first_event(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
            "data: one\n\n",
            relay,
        );
        // Chunked event stream.
        client_leaves_after_first_event(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
            "b\r\ndata: one\n\n\r\n",
            relay,
        );
        // Bodies long enough to splice: an event stream with a large Content-Length, and a
        // chunked stream inside one 1 MiB chunk. The spliced wait watches the client too.
        client_leaves_after_first_event(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 10000000\r\n\r\n",
            "data: one\n\n",
            relay,
        );
        client_leaves_after_first_event(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
            "100000\r\ndata: one\n\n",
            relay,
        );
    }
}

#[test]
fn pipelined_request_does_not_end_a_stream() {
    // Each connection: answer every request with a chunked stream of two events 300 ms apart.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            thread::spawn(move || {
                while read_request_head(&mut s) {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata:1\r\n",
                    );
                    thread::sleep(Duration::from_millis(300));
                    let _ = s.write_all(b"6\r\ndata:2\r\n0\r\n\r\n");
                }
            });
        }
    });
    let gw = gateway_to(up, "");
    let mut c = gw.conn();
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    for _ in 0..2 {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"data:1data:2");
    }
    let r = c.request(b"GET /c HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.body, b"data:1data:2");
}

#[test]
fn chunked_stream_stays_chunked_and_unbatched() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        read_request_head(&mut s);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        for k in 0..4 {
            thread::sleep(Duration::from_millis(150));
            let ev = format!("data: {k}\n\n");
            s.write_all(format!("{:x}\r\n{ev}\r\n", ev.len()).as_bytes())
                .unwrap();
        }
        s.write_all(b"0\r\n\r\n").unwrap();
        read_request_head(&mut s);
    });
    let gw = gateway_to(up, "");
    let mut c: Conn = gw.conn();
    c.send(b"GET /s HTTP/1.1\r\nHost: t\r\n\r\n");
    let started = Instant::now();
    let mut got = Vec::new();
    let mut firsts = Vec::new();
    while !got.ends_with(b"0\r\n\r\n") {
        let mut buf = [0u8; 1024];
        let n = c.stream.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        firsts.push(started.elapsed());
    }
    let text = String::from_utf8(got).unwrap();
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(text.ends_with("9\r\ndata: 3\n\n\r\n0\r\n\r\n"), "{text}");
    // One read per event (plus head and terminator), not one burst at the end.
    assert!(
        firsts.len() >= 4,
        "events arrived in {} reads",
        firsts.len()
    );
}
