//! Body relays through the real gateway in `relay = "splice"` and `relay = "copy"`: integrity
//! at the sizes around the splice threshold and pipe size, with a pipelined request after each
//! body (a relay that reads past its body would eat it); aborts on either side mid-body end
//! cleanly and leak no fds.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{config_with, free_port, read_request_head, Conn, Gateway};
use ringway::backend::{pattern, Backend, BackendOptions};

const SIZES: [usize; 6] = [0, 1, 4095, 4096, 65536, 1024 * 1024 + 1];

fn gateway(mode: &str, backend: SocketAddr) -> Gateway {
    gateway_on(mode, backend, "auto")
}

/// A gateway on `driver` ("auto" = io_uring here, or "epoll"): splice waits for readiness
/// through the driver, so both must work.
fn gateway_on(mode: &str, backend: SocketAddr, driver: &str) -> Gateway {
    let top =
        format!("io_driver = \"{driver}\"\npipe_size = \"256KiB\"\n[access_log]\nenabled = false");
    let cfg = config_with(
        free_port(),
        backend,
        &top,
        "max_idle = 0",
        &format!("relay = \"{mode}\""),
    );
    Gateway::start(&cfg)
}

fn backend() -> Backend {
    Backend::start(BackendOptions::default()).expect("start backend")
}

fn get_integrity(mode: &str) {
    get_integrity_on(mode, "auto");
}

fn get_integrity_on(mode: &str, driver: &str) {
    let b = backend();
    let gw = gateway_on(mode, b.addr, driver);
    get_sizes(&gw, mode);
}

fn get_sizes(gw: &Gateway, mode: &str) {
    let mut c = gw.conn();
    for n in SIZES {
        // Both requests in one write: the second must survive the first body's relay.
        c.send(
            format!(
                "GET /size/{n} HTTP/1.1\r\nHost: t\r\n\r\nGET /size/7 HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = c.read_response();
        assert_eq!(r.status, 200, "{mode} size {n}");
        assert!(r.body == pattern(n), "{mode}: body of /size/{n} differs");
        let r = c.read_response();
        assert_eq!(r.body, pattern(7), "{mode}: pipelined response after {n}");
    }
}

fn post_integrity(mode: &str) {
    post_integrity_on(mode, "auto");
}

fn post_integrity_on(mode: &str, driver: &str) {
    let b = backend();
    let gw = gateway_on(mode, b.addr, driver);
    let mut c = gw.conn();
    for n in SIZES {
        let body = pattern(n);
        let mut raw =
            format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\r\n").into_bytes();
        raw.extend_from_slice(&body);
        raw.extend_from_slice(b"GET /size/5 HTTP/1.1\r\nHost: t\r\n\r\n");
        // Send from another thread: the echo streams back while the body is still going out.
        let mut w = c.stream.try_clone().expect("clone");
        let sender = thread::spawn(move || w.write_all(&raw).expect("send"));
        let r = c.read_response();
        sender.join().expect("sender");
        assert_eq!(r.status, 200, "{mode} size {n}");
        assert!(r.body == body, "{mode}: echo of {n} bytes differs");
        let r = c.read_response();
        assert_eq!(
            r.body,
            pattern(5),
            "{mode}: pipelined request after POST of {n}"
        );
    }
}

#[test]
fn get_bodies_intact_splice() {
    get_integrity("splice");
}

#[test]
fn get_bodies_intact_copy() {
    get_integrity("copy");
}

#[test]
fn post_bodies_intact_splice() {
    post_integrity("splice");
}

#[test]
fn post_bodies_intact_copy() {
    post_integrity("copy");
}

#[test]
fn get_and_post_intact_splice_epoll() {
    get_integrity_on("splice", "epoll");
    post_integrity_on("splice", "epoll");
}

#[test]
fn auto_splices_and_stays_intact() {
    get_integrity("auto");
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits (bounded) for the gateway's open fds to come back to `want`; returns the last count.
fn settle_fds(pid: u32, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = open_fds(pid);
        if n == want || Instant::now() > deadline {
            return n;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The fd count once the gateway has finished closing the last connection.
fn quiet_fds(pid: u32) -> usize {
    thread::sleep(Duration::from_millis(300));
    open_fds(pid)
}

/// One full request so the worker has its pooled pipe and buffers before counting fds.
fn warm(gw: &Gateway) {
    let r = gw
        .conn()
        .request(b"GET /size/100000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.body.len(), 100_000);
}

fn client_abort(mode: &str) {
    let b = backend();
    let gw = gateway(mode, b.addr);
    warm(&gw);
    let before = quiet_fds(gw.pid());
    // Response side: read a little of 16 MiB, then hang up.
    let mut c = gw.conn();
    c.send(b"GET /size/16777216 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut got = vec![0u8; 100 * 1024];
    c.stream.read_exact(&mut got).expect("first bytes");
    drop(c);
    // Request side: announce 1 MiB, send 100 KiB, hang up.
    let mut c = gw.conn();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n");
    c.send(&pattern(100 * 1024));
    thread::sleep(Duration::from_millis(50));
    drop(c);
    warm(&gw);
    assert_eq!(settle_fds(gw.pid(), before), before, "{mode}: fds leaked");
}

#[test]
fn client_abort_mid_body_splice() {
    client_abort("splice");
}

#[test]
fn client_abort_mid_body_copy() {
    client_abort("copy");
}

/// A loopback upstream running `serve` on every connection it accepts, each in a thread of
/// its own.
fn upstream_serving(serve: fn(&mut TcpStream)) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || serve(&mut s));
        }
    });
    addr
}

/// An upstream that announces 1 MiB, sends 100 KiB of it and closes, for every connection.
fn cutting_upstream() -> SocketAddr {
    upstream_serving(serve_cut)
}

fn serve_cut(s: &mut TcpStream) {
    if !read_request_head(s) {
        return;
    }
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n");
    let _ = s.write_all(&pattern(100 * 1024));
}

fn upstream_abort(mode: &str) {
    let gw = gateway(mode, cutting_upstream());
    let mut first = Conn::connect(gw.addr);
    first.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    let _ = first.read_to_close();
    let before = quiet_fds(gw.pid());
    let mut c = gw.conn();
    c.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    let started = Instant::now();
    let got = c.read_to_close();
    assert!(started.elapsed() < Duration::from_secs(5), "{mode}: hang");
    let head_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head")
        + 4;
    assert!(got.starts_with(b"HTTP/1.1 200"), "{mode}: status");
    assert_eq!(got.len() - head_end, 100 * 1024, "{mode}: partial body");
    assert!(got[head_end..] == pattern(100 * 1024)[..], "{mode}: bytes");
    assert_eq!(settle_fds(gw.pid(), before), before, "{mode}: fds leaked");
}

#[test]
fn upstream_abort_mid_body_splice() {
    upstream_abort("splice");
}

#[test]
fn upstream_abort_mid_body_copy() {
    upstream_abort("copy");
}

/// An upstream that announces 64 MiB and writes as fast as the gateway takes it; reports how
/// many bytes it got rid of before writes stalled for half a second.
fn flooding_upstream() -> (SocketAddr, std::sync::mpsc::Receiver<usize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let mut head = [0u8; 4096];
        let _ = s.read(&mut head);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n");
        s.set_nonblocking(true).expect("nonblocking");
        let chunk = vec![b'z'; 64 * 1024];
        let (mut sent, mut stalled_since) = (0usize, Instant::now());
        while stalled_since.elapsed() < Duration::from_millis(500) {
            match s.write(&chunk) {
                Ok(n) => {
                    sent += n;
                    stalled_since = Instant::now();
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
        let _ = tx.send(sent);
    });
    (addr, rx)
}

/// A client that does not read: the relay must stop taking from the upstream once kernel
/// buffers and the pipe are full, instead of buffering the body.
fn slow_reader(mode: &str) {
    let (addr, sent) = flooding_upstream();
    let gw = gateway(mode, addr);
    let mut c = gw.conn();
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    let sent = sent
        .recv_timeout(Duration::from_secs(20))
        .expect("upstream stalled");
    // Only kernel socket buffers (autotuned; 9–14 MiB measured here in total) and the pipe
    // (256 KiB) may hold the body; 64 MiB would mean ringway buffered all of it.
    eprintln!("{mode}: upstream got {sent} bytes out before the relay stalled");
    assert!(
        sent < 40 << 20,
        "{mode}: upstream wrote {sent} bytes into a stalled relay"
    );
    drop(c);
}

#[test]
fn slow_reader_bounded_splice() {
    slow_reader("splice");
}

#[test]
fn slow_reader_bounded_copy() {
    slow_reader("copy");
}

/// Chunk sizes of [`chunked_upstream`]'s body: small ones are copied, ≥ 64 KiB ones spliced.
const CHUNKS: [usize; 6] = [5, 100_000, 70_000, 3, 65_536, 200_000];

/// A keep-alive upstream answering every request with a chunked body of [`CHUNKS`] (pattern
/// bytes, continuing across chunks), with an extension and a trailer to be dropped.
fn chunked_upstream() -> SocketAddr {
    upstream_serving(|s| while serve_chunked(s) {})
}

fn serve_chunked(s: &mut TcpStream) -> bool {
    if !read_request_head(s) {
        return false;
    }
    let body = pattern(CHUNKS.iter().sum());
    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut at = 0;
    for n in CHUNKS {
        out.extend_from_slice(format!("{n:X};ext=1\r\n").as_bytes());
        out.extend_from_slice(&body[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
    }
    out.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
    s.write_all(&out).is_ok()
}

fn chunked_integrity(mode: &str) {
    let gw = gateway(mode, chunked_upstream());
    let mut c = gw.conn();
    let want = pattern(CHUNKS.iter().sum());
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    for _ in 0..2 {
        let r = c.read_response();
        assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{mode}");
        assert!(r.body == want, "{mode}: chunked body differs");
    }
    // HTTP/1.0: the data alone, delimited by close.
    let mut c = gw.conn();
    c.send(b"GET /c HTTP/1.0\r\nHost: t\r\n\r\n");
    let got = c.read_to_close();
    assert!(got.ends_with(&want), "{mode}: HTTP/1.0 body differs");
}

#[test]
fn chunked_bodies_intact_splice() {
    chunked_integrity("splice");
}

#[test]
fn chunked_bodies_intact_copy() {
    chunked_integrity("copy");
}

/// With upstream keep-alive (default pool), connections that carried spliced bodies are reused:
/// a relay that left or took a stray byte would corrupt the next response.
#[test]
fn pooled_upstreams_reused_after_splice() {
    let b = backend();
    let cfg = config_with(
        free_port(),
        b.addr,
        "[access_log]\nenabled = false",
        "",
        "relay = \"splice\"",
    );
    let gw = Gateway::start(&cfg);
    for _ in 0..3 {
        get_sizes(&gw, "splice pooled");
    }
    assert!(
        b.accepted() < 3 * SIZES.len() as u64,
        "upstream connections were not reused"
    );
}

/// A client that stops reading for longer than the upstream's response timeout (but within its
/// own send timeout) still gets the whole body in both modes: waiting for the client is bounded
/// by the client's send timeout, not by the upstream's.
#[test]
fn client_pausing_past_the_response_timeout_gets_the_whole_body() {
    let b = backend();
    const N: usize = 8 * 1024 * 1024;
    for mode in ["splice", "copy"] {
        let port = free_port();
        let cfg = config_with(
            port,
            b.addr,
            "",
            "response_timeout = \"1s\"",
            &format!("relay = \"{mode}\""),
        )
        .replace(
            &format!("address = \"127.0.0.1:{port}\"\n"),
            &format!("address = \"127.0.0.1:{port}\"\nsend_timeout = \"30s\"\n"),
        );
        let gw = Gateway::start(&cfg);
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(64 * 1024).unwrap();
        s.connect(&gw.addr.into()).unwrap();
        let mut s: TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("GET /size/{N} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        thread::sleep(Duration::from_millis(2500));
        let mut got = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        let head_end = loop {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "{mode}: closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        while got.len() - head_end < N {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(got.len() - head_end, N, "{mode}: body cut short");
        assert!(got[head_end..] == pattern(N)[..], "{mode}: body altered");
    }
}
