//! WebSocket through the gateway: a real client (tungstenite) against the built-in backend's
//! `/ws` echo (and raw upstreams where the test needs to see TCP-level behaviour).
//! Every payload must come back byte-identical; closes must travel both ways.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{config_with, free_port, Conn, Gateway};
use ringway::backend::{Backend, BackendOptions};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

/// Every tunnel case runs three times: on a `relay = "splice"` route (socket → pipe → socket),
/// a `relay = "copy"` route (reads and writes through user space) and a `relay = "auto"` route
/// (copy, splicing while a direction carries bulk data).
macro_rules! both_relays {
    ($name:ident) => {
        mod $name {
            #[test]
            fn splice() {
                super::$name("splice")
            }

            #[test]
            fn copy() {
                super::$name("copy")
            }

            /// Copy for small messages, splice while a direction carries bulk data.
            #[test]
            fn auto() {
                super::$name("auto")
            }
        }
    };
}

/// Route lines for `relay` plus `extra`. The raw test upstreams switch to a protocol named
/// `raw`, which a route must allow besides WebSocket.
fn route(relay: &str, extra: &str) -> String {
    format!("relay = \"{relay}\"\nupgrades = [\"websocket\", \"raw\"]\n{extra}")
}

fn setup(relay: &str, route_extra: &str) -> (Backend, Gateway) {
    let backend = Backend::start(BackendOptions::default()).expect("backend");
    let gw = Gateway::start(&config_with(
        free_port(),
        backend.addr,
        "",
        "",
        &route(relay, route_extra),
    ));
    (backend, gw)
}

/// A gateway whose only upstream is `up` (a raw test upstream).
fn gateway_to(up: SocketAddr, relay: &str) -> Gateway {
    Gateway::start(&config_with(free_port(), up, "", "", &route(relay, "")))
}

fn connect(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.set_nodelay(true).unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, resp) = tungstenite::client::client(url, tcp).expect("websocket handshake");
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// Next data or control message (tungstenite answers pings itself).
fn next(ws: &mut WebSocket<TcpStream>) -> Message {
    ws.read().expect("read message")
}

/// Deterministic but not repetitive bytes.
fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

both_relays!(text_binary_ping_and_large_frames_echo_identically);
fn text_binary_ping_and_large_frames_echo_identically(relay: &str) {
    let (_b, gw) = setup(relay, "");
    let mut ws = connect(gw.addr, "/ws");
    ws.send(Message::Text("hello, tunnel ✓".into())).unwrap();
    assert_eq!(next(&mut ws), Message::Text("hello, tunnel ✓".into()));
    for (i, n) in [0usize, 1, 125, 126, 65_535, 65_536, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let data = noise(n, i as u32 + 7);
        ws.send(Message::Binary(data.clone())).unwrap();
        match next(&mut ws) {
            Message::Binary(got) => assert!(got == data, "binary frame of {n} B altered"),
            other => panic!("expected binary, got {other:?}"),
        }
    }
    ws.send(Message::Ping(b"are you there".to_vec())).unwrap();
    assert_eq!(next(&mut ws), Message::Pong(b"are you there".to_vec()));
    // Many small messages back to back arrive complete and in order.
    for i in 0..200 {
        ws.write(Message::Text(format!("msg {i}"))).unwrap();
    }
    ws.flush().unwrap();
    for i in 0..200 {
        assert_eq!(next(&mut ws), Message::Text(format!("msg {i}")));
    }
}

both_relays!(fragmented_messages_are_reassembled_identically);
fn fragmented_messages_are_reassembled_identically(relay: &str) {
    let (_b, gw) = setup(relay, "");
    let mut ws = connect(gw.addr, "/ws");
    let parts: [&[u8]; 3] = [b"frag", b"mented ", b"message"];
    let text = OpCode::Data(Data::Text);
    let cont = OpCode::Data(Data::Continue);
    ws.write(Message::Frame(Frame::message(
        parts[0].to_vec(),
        text,
        false,
    )))
    .unwrap();
    ws.write(Message::Frame(Frame::message(
        parts[1].to_vec(),
        cont,
        false,
    )))
    .unwrap();
    // A control frame may sit between fragments.
    ws.write(Message::Ping(b"mid".to_vec())).unwrap();
    ws.write(Message::Frame(Frame::message(
        parts[2].to_vec(),
        cont,
        true,
    )))
    .unwrap();
    ws.flush().unwrap();
    assert_eq!(next(&mut ws), Message::Pong(b"mid".to_vec()));
    assert_eq!(next(&mut ws), Message::Text("fragmented message".into()));
    // Binary, fragmented in 3 pieces of 100 KiB.
    let data = noise(300 * 1024, 3);
    let bin = OpCode::Data(Data::Binary);
    for (k, piece) in data.chunks(100 * 1024).enumerate() {
        let op = if k == 0 { bin } else { cont };
        ws.write(Message::Frame(Frame::message(piece.to_vec(), op, k == 2)))
            .unwrap();
    }
    ws.flush().unwrap();
    assert!(next(&mut ws) == Message::Binary(data));
}

/// Reads until the peer closes the TCP connection; true if that happened within `wait`.
fn tcp_closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(deadline - Instant::now() + Duration::from_millis(1)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

both_relays!(close_codes_travel_both_ways);
fn close_codes_travel_both_ways(relay: &str) {
    let (_b, gw) = setup(relay, "");
    // Client-initiated close: the server echoes the code and reason.
    let mut ws = connect(gw.addr, "/ws");
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4001),
        reason: "client bye".into(),
    }))
    .unwrap();
    match next(&mut ws) {
        Message::Close(Some(f)) => {
            assert_eq!(u16::from(f.code), 4001);
            assert_eq!(f.reason, "client bye");
        }
        other => panic!("expected close, got {other:?}"),
    }
    // The backend closes after the handshake; the gateway passes the close on.
    assert!(tcp_closed_within(ws.get_mut(), Duration::from_secs(2)));

    // Server-initiated close with a code of its own.
    let mut ws = connect(gw.addr, "/ws");
    ws.send(Message::Text("close:4002".into())).unwrap();
    match next(&mut ws) {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 4002),
        other => panic!("expected close, got {other:?}"),
    }
    // tungstenite queued its close reply; flushing completes the handshake.
    let _ = ws.flush();
    assert!(tcp_closed_within(ws.get_mut(), Duration::from_secs(2)));
}

both_relays!(non_101_answer_is_a_normal_response);
fn non_101_answer_is_a_normal_response(relay: &str) {
    let (_b, gw) = setup(relay, "");
    let mut c = Conn::connect(gw.addr);
    let upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    let r = c.request(
        format!("GET /status/403 HTTP/1.1\r\nHost: t\r\n{upgrade}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.body_str(), "{\"status\":403}");
    // No key: the backend refuses the handshake with 400.
    let r = c.request(format!("GET /ws HTTP/1.1\r\nHost: t\r\n{upgrade}\r\n").as_bytes());
    assert_eq!(r.status, 400);
}

both_relays!(idle_tunnel_is_closed_but_response_timeout_does_not_apply);
fn idle_tunnel_is_closed_but_response_timeout_does_not_apply(relay: &str) {
    let (_b, gw) = setup(
        relay,
        "response_timeout = \"300ms\"\ntunnel_idle_timeout = \"1200ms\"",
    );
    let mut ws = connect(gw.addr, "/ws");
    // Gaps longer than the response timeout, shorter than the tunnel idle timeout.
    for i in 0..3 {
        thread::sleep(Duration::from_millis(600));
        ws.send(Message::Text(format!("tick {i}"))).unwrap();
        assert_eq!(next(&mut ws), Message::Text(format!("tick {i}")));
    }
    let quiet = Instant::now();
    assert!(tcp_closed_within(ws.get_mut(), Duration::from_secs(4)));
    let took = quiet.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(2500),
        "idle tunnel closed after {took:?}, expected ~1.2 s"
    );
}

/// An upstream that accepts one connection, reads its request head (byte by byte: nothing
/// past it) and hands the socket to `then`.
fn one_request_upstream(
    then: impl FnOnce(TcpStream) + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(common::read_request_head(&mut s), "request head cut");
        then(s);
    });
    (addr, h)
}

/// An upstream that accepts one connection, answers the upgrade with 101 and hands the socket
/// to `then`.
fn raw_upgrade_upstream(
    then: impl FnOnce(TcpStream) + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<()>) {
    one_request_upstream(|mut s| {
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\nhello",
        )
        .unwrap();
        then(s);
    })
}

fn raw_upgrade_client(gw: &Gateway) -> Conn {
    let mut c = gw.conn();
    let r = c.request(b"GET /t HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\n");
    assert_eq!(r.status, 101);
    c
}

fn read_exact_buffered(c: &mut Conn, n: usize) -> Vec<u8> {
    let mut got = c.buffered().to_vec();
    while got.len() < n {
        let mut buf = [0u8; 1024];
        let k = c.stream.read(&mut buf).expect("read");
        assert!(k > 0, "closed early; got {got:?}");
        got.extend_from_slice(&buf[..k]);
    }
    got
}

both_relays!(client_half_close_reaches_upstream_which_can_still_answer);
fn client_half_close_reaches_upstream_which_can_still_answer(relay: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (up, h) = raw_upgrade_upstream(move |mut s| {
        let mut got = Vec::new();
        let started = Instant::now();
        s.read_to_end(&mut got).unwrap(); // until the client's FIN arrives
        tx.send((got, started.elapsed())).unwrap();
        s.write_all(b" after your FIN").unwrap();
        // Dropping closes: the client must see EOF.
    });
    let gw = gateway_to(up, relay);
    let mut c = raw_upgrade_client(&gw);
    assert_eq!(read_exact_buffered(&mut c, 5), b"hello");
    c.stream.write_all(b"ping bytes").unwrap();
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let (got, _) = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("upstream saw EOF");
    assert_eq!(got, b"ping bytes");
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b" after your FIN");
    h.join().unwrap();
}

both_relays!(upstream_close_reaches_client_and_client_reset_reaches_upstream);
fn upstream_close_reaches_client_and_client_reset_reaches_upstream(relay: &str) {
    // Upstream closes: the client sees EOF promptly.
    let (up, h) = raw_upgrade_upstream(drop);
    let gw = gateway_to(up, relay);
    let mut c = raw_upgrade_client(&gw);
    let started = Instant::now();
    assert!(
        c.is_closed(Duration::from_secs(2)),
        "client did not see the close"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(c.buffered(), b"hello");
    h.join().unwrap();
    drop(gw);

    // Client goes away abruptly: the upstream sees its connection end promptly.
    let (tx, rx) = std::sync::mpsc::channel();
    let (up, h) = raw_upgrade_upstream(move |mut s| {
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        tx.send(matches!(r, Ok(0) | Err(_))).unwrap();
    });
    let gw = gateway_to(up, relay);
    let c = raw_upgrade_client(&gw);
    let sock = socket2::SockRef::from(&c.stream);
    sock.set_linger(Some(Duration::ZERO)).unwrap(); // close sends RST
    drop(c);
    let ended = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("upstream saw the end");
    assert!(ended);
    h.join().unwrap();
}

both_relays!(upstream_half_close_reaches_client_which_can_still_send);
fn upstream_half_close_reaches_client_which_can_still_send(relay: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (up, h) = raw_upgrade_upstream(move |mut s| {
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap(); // the client still talks after our FIN
        tx.send(got).unwrap();
    });
    let gw = gateway_to(up, relay);
    let mut c = raw_upgrade_client(&gw);
    assert!(c.is_closed(Duration::from_secs(2)), "client saw no EOF");
    assert_eq!(c.buffered(), b"hello");
    c.stream.write_all(b"still here").unwrap();
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let got = rx.recv_timeout(Duration::from_secs(3)).expect("upstream");
    assert_eq!(got, b"still here");
    h.join().unwrap();
}

both_relays!(bulk_both_ways_at_once_is_byte_identical);
/// 8 MiB each way at the same time (more than any pipe or socket buffer), then closes both
/// ways: exercises stalls on both sides of each direction.
fn bulk_both_ways_at_once_is_byte_identical(relay: &str) {
    const N: usize = 8 << 20;
    let (up, h) = raw_upgrade_upstream(|s| {
        let mut w = s.try_clone().unwrap();
        let sender = thread::spawn(move || {
            w.write_all(&noise(N, 21)).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut s = s;
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert!(
            got == noise(N, 12),
            "upstream got {} altered bytes",
            got.len()
        );
        sender.join().unwrap();
    });
    let gw = gateway_to(up, relay);
    let mut c = raw_upgrade_client(&gw);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut w = c.stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        w.write_all(&noise(N, 12)).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = c.buffered().to_vec();
    c.stream.read_to_end(&mut got).unwrap();
    assert_eq!(&got[..5], b"hello");
    assert!(
        got[5..] == noise(N, 21)[..],
        "client got {} altered bytes",
        got.len() - 5
    );
    sender.join().unwrap();
    h.join().unwrap();
}

both_relays!(idle_tunnels_hold_no_pipes);
/// An idle tunnel costs its two sockets and no pipes: a spliced direction gives its pipe back
/// while its source is quiet (with pipes held, 9,900 tunnels would need 6 fds each and no
/// longer fit a 20,000-fd limit).
fn idle_tunnels_hold_no_pipes(relay: &str) {
    let (_b, gw) = setup(relay, "");
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", gw.pid()))
            .unwrap()
            .count()
    };
    let before = fds();
    let mut tunnels: Vec<_> = (0..40).map(|_| connect(gw.addr, "/ws")).collect();
    for (i, ws) in tunnels.iter_mut().enumerate() {
        ws.send(Message::text(format!("hello {i}"))).unwrap();
        assert_eq!(next(ws), Message::text(format!("hello {i}")));
    }
    std::thread::sleep(Duration::from_millis(200));
    let per_tunnel = (fds() - before) as f64 / 40.0;
    // Client and upstream socket per tunnel; the worker's small pipe pool may add a few.
    assert!(per_tunnel < 2.5, "{per_tunnel} fds per idle tunnel");
}

/// A 101 must name the protocol it switches to (RFC 9110 §15.2.2): one without `Upgrade` is a
/// 502, and nothing the upstream sent after it reaches the client.
#[test]
fn switch_without_upgrade_field_is_502() {
    let (addr, h) = one_request_upstream(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\nraw bytes");
        thread::sleep(Duration::from_millis(300));
    });
    let gw = gateway_to(addr, "auto");
    let mut c = gw.conn();
    c.send(b"GET /t HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 502, "{r:?}");
    let rest = c.read_to_close();
    assert!(
        !String::from_utf8_lossy(&rest).contains("raw bytes"),
        "{rest:?}"
    );
    h.join().unwrap();
}

/// An upgrade request with a body switches once the whole body is through (RFC 9110 §7.8),
/// however its bytes arrive: the upstream here reads the body, then answers 101 and echoes.
#[test]
fn upgrade_with_a_body_switches_after_the_body() {
    for split in [false, true] {
        let (addr, h) = one_request_upstream(|mut s| {
            let mut body = [0u8; 10];
            s.read_exact(&mut body).unwrap();
            assert_eq!(&body, b"0123456789");
            s.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n",
            )
            .unwrap();
            let mut ping = [0u8; 4];
            s.read_exact(&mut ping).unwrap();
            s.write_all(&ping).unwrap();
        });
        let gw = gateway_to(addr, "auto");
        let mut c = gw.conn();
        let head = b"POST /t HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: raw\r\nContent-Length: 10\r\n\r\n";
        if split {
            c.send(head);
            thread::sleep(Duration::from_millis(100));
            c.send(b"0123456789");
        } else {
            c.send(&[&head[..], b"0123456789"].concat());
        }
        let r = c.read_response();
        assert_eq!(r.status, 101, "split={split}: {r:?}");
        c.send(b"ping");
        assert_eq!(read_exact_buffered(&mut c, 4), b"ping", "split={split}");
        h.join().unwrap();
    }
}

both_relays!(tunnel_to_a_peer_that_stops_reading_closes_at_the_idle_timeout);
/// A peer that stops reading stalls the tunnel once the socket buffers are full; with nothing
/// moving either way that is idleness, and the tunnel closes at its idle timeout, stalled
/// write included (the upstream here floods, the client reads nothing).
fn tunnel_to_a_peer_that_stops_reading_closes_at_the_idle_timeout(relay: &str) {
    let (addr, h) = raw_upgrade_upstream(|mut s| {
        let chunk = vec![b'f'; 64 * 1024];
        s.set_write_timeout(Some(Duration::from_secs(8))).unwrap();
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until && s.write_all(&chunk).is_ok() {}
    });
    let gw = Gateway::start(&config_with(
        free_port(),
        addr,
        "",
        "",
        &route(relay, "tunnel_idle_timeout = \"1s\""),
    ));
    let mut c = raw_upgrade_client(&gw);
    let started = Instant::now();
    // Read nothing for a while, then see the connection closed.
    thread::sleep(Duration::from_millis(2500));
    let closed = tcp_closed_within_draining(&mut c.stream, Duration::from_secs(5));
    assert!(closed, "{relay}: the stalled tunnel must close");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(7),
        "{relay}: closed after {took:?}"
    );
    h.join().unwrap();
}

/// Reads (and drops) until EOF or reset within `wait`; true if the peer closed.
fn tcp_closed_within_draining(s: &mut TcpStream, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

both_relays!(bulk_and_small_messages_alternate_byte_identical);
/// Bulk, then small messages with pauses (a spliced direction goes quiet and, with `auto`,
/// back to copying), then bulk again: every byte echoed back in order.
fn bulk_and_small_messages_alternate_byte_identical(relay: &str) {
    let (up, h) = raw_upgrade_upstream(|mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&buf[..n]).unwrap(),
            }
        }
    });
    let gw = gateway_to(up, relay);
    let mut c = raw_upgrade_client(&gw);
    assert_eq!(read_exact_buffered(&mut c, 5), b"hello");
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let echo = |c: &mut Conn, data: &[u8]| {
        let mut w = c.stream.try_clone().unwrap();
        let out = data.to_vec();
        let sender = thread::spawn(move || w.write_all(&out).unwrap());
        let mut got = vec![0u8; data.len()];
        c.stream.read_exact(&mut got).unwrap();
        sender.join().unwrap();
        assert!(
            got == data,
            "{relay}: {} bytes came back altered",
            data.len()
        );
    };
    for round in 0..3u32 {
        echo(&mut c, &noise(1 << 20, 40 + round));
        for i in 0..5u32 {
            thread::sleep(Duration::from_millis(30));
            echo(&mut c, &noise(300 + i as usize, 50 + round * 10 + i));
        }
    }
    drop(c);
    h.join().unwrap();
}

/// SIGTERM gives an open tunnel `drain_timeout`, as it gives a request in flight, whatever
/// else the worker is doing: it keeps relaying, then closes, and the process exits 0.
#[test]
fn sigterm_gives_open_tunnels_the_drain_timeout() {
    let backend = Backend::start(BackendOptions::default()).expect("backend");
    let mut gw = Gateway::start(&config_with(
        free_port(),
        backend.addr,
        "drain_timeout = \"1500ms\"",
        "",
        "",
    ));
    let mut ws = connect(gw.addr, "/ws");
    ws.send(Message::text("before")).unwrap();
    assert_eq!(next(&mut ws), Message::text("before"));
    let signalled = Instant::now();
    gw.sigterm();
    thread::sleep(Duration::from_millis(500));
    ws.send(Message::text("during the drain")).unwrap();
    assert_eq!(next(&mut ws), Message::text("during the drain"));
    let status = gw.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status:?}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "exit {took:?} after SIGTERM, expected about the 1.5 s drain timeout"
    );
    assert!(tcp_closed_within(ws.get_mut(), Duration::from_secs(2)));
}

/// A tunnel's access-log line is written when it ends, with the bytes it carried to the client
/// and its whole lifetime (not just the 101).
#[test]
fn tunnel_access_log_line_records_the_tunnel() {
    let (up, h) = raw_upgrade_upstream(|mut s| {
        thread::sleep(Duration::from_millis(300));
        s.write_all(&vec![b'z'; 100_000]).unwrap();
        thread::sleep(Duration::from_millis(300));
    });
    let dir = common::temp_dir("tunnel-log");
    let log = dir.join("access.log");
    let top = format!("[access_log]\nenabled = true\npath = \"{}\"", log.display());
    let mut gw = Gateway::start(&config_with(free_port(), up, &top, "", &route("auto", "")));
    let mut c = raw_upgrade_client(&gw);
    assert_eq!(read_exact_buffered(&mut c, 100_005).len(), 100_005);
    // The upstream's close reaches the client as a half-close; the client closes its side.
    assert!(tcp_closed_within(&mut c.stream, Duration::from_secs(3)));
    drop(c);
    h.join().unwrap();
    thread::sleep(Duration::from_millis(100));
    gw.sigterm();
    assert!(gw
        .wait_exit(Duration::from_secs(5))
        .is_some_and(|s| s.success()));
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("\"GET /t\" 101 "))
        .expect(&text);
    let fields: Vec<&str> = line.split(' ').collect();
    let status_at = fields.iter().position(|f| *f == "101").unwrap();
    let bytes: u64 = fields[status_at + 1].parse().unwrap();
    let micros: u64 = fields
        .last()
        .unwrap()
        .trim_end_matches("us")
        .parse()
        .unwrap();
    assert!(bytes >= 100_005, "{line}");
    assert!(micros >= 550_000, "the tunnel lived ~600 ms: {line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Only the protocols a route lists (`upgrades`, default WebSocket) may be switched to: an
/// `h2c` offer goes upstream as an ordinary request, without Upgrade (a 101 to it would open a
/// raw tunnel past routing: h2c smuggling), and a 101 to a protocol the client did not offer
/// is a 502.
#[test]
fn only_the_routes_upgrade_protocols_are_passed_on() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let up = common::RawUpstream::start(move |mut c| {
        while let Some(head) = c.read_head() {
            let lower = head.to_ascii_lowercase();
            log.lock().unwrap().push(lower.clone());
            if lower.contains("upgrade: websocket") {
                c.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n");
                return;
            }
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let h2c = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
    let gw = Gateway::start(&config_with(free_port(), up.addr, "", "", ""));
    let r = gw.conn().request(h2c);
    assert_eq!(r.status, 200, "{r:?}");
    let head = seen.lock().unwrap().last().cloned().unwrap();
    assert!(!head.contains("upgrade"), "h2c offer passed on: {head}");
    // A 101 naming a protocol the client did not offer.
    let mut c = gw.conn();
    let r = c.request(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_eq!(r.status, 502, "{r:?}");
    // An offer of several protocols passes on only the allowed ones.
    let mut c = gw.conn();
    let r = c.request(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket/13\r\n\r\n",
    );
    assert_eq!(r.status, 502, "the upstream here switches to foo: {r:?}");
    let head = seen.lock().unwrap().last().cloned().unwrap();
    assert!(head.contains("upgrade: websocket/13\r\n"), "{head}");
    assert!(!head.contains("h2c"), "{head}");
    // A route that lists h2c passes it on.
    let gw = Gateway::start(&config_with(
        free_port(),
        up.addr,
        "",
        "",
        "upgrades = [\"h2c\"]",
    ));
    let r = gw.conn().request(h2c);
    assert_eq!(r.status, 200, "{r:?}");
    let head = seen.lock().unwrap().last().cloned().unwrap();
    assert!(head.contains("upgrade: h2c"), "{head}");
}
