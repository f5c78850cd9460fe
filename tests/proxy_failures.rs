//! The gateway's own answers when routing or an upstream fails: statuses, JSON bodies, speed,
//! truncation without padding, and pooled-connection races (retry only what is safe).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    backend, config_with, free_port, gateway_for, get, send_in_thread, Gateway, RawUpstream,
};

/// An address where nothing listens (bound once, then released).
fn closed_port_addr() -> std::net::SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

fn json_error(r: &common::Response, status: u16) {
    assert_eq!(r.status, status);
    assert!(
        r.header("date").is_some(),
        "ringway's own answers carry Date: {r:?}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON error body");
    assert_eq!(v["status"], status);
    assert!(v["error"].is_string(), "{v}");
}

#[test]
fn no_route_is_404_json_and_keeps_the_connection() {
    let b = backend();
    let port = free_port();
    let cfg = format!(
        "workers = 1\nhost_check = \"off\"\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
         [[upstreams]]\nname = \"b\"\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/api\"\nupstream = \"b\"\n",
        b.addr
    );
    let gw = Gateway::start(&cfg);
    let mut c = gw.conn();
    json_error(&c.request(&get("/nothing/here")), 404);
    // Pipelined behind a 404: each request is answered once, in order.
    let mut req = get("/nothing");
    req.extend_from_slice(&get("/api/x"));
    c.send(&req);
    json_error(&c.read_response(), 404);
    let r = c.read_response();
    assert_eq!(
        r.status, 200,
        "connection still usable after the 404: {r:?}"
    );
    assert!(!c.is_closed(Duration::from_millis(200)), "kept alive");
    assert!(
        c.buffered().is_empty(),
        "nothing more was answered: {:?}",
        String::from_utf8_lossy(c.buffered())
    );
}

/// ringway's own answers to HEAD end with their head (RFC 9110 §9.3.2): no JSON body that a
/// client would read as the start of the next response on the connection.
#[test]
fn own_answers_to_head_carry_no_body() {
    let b = backend();
    let port = free_port();
    let cfg = format!(
        "workers = 1\nhost_check = \"off\"\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
         [[upstreams]]\nname = \"b\"\nservers = [\"{}\"]\n\
         [[upstreams]]\nname = \"down\"\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/api\"\nupstream = \"b\"\n\
         [[routes]]\npath_prefix = \"/post\"\nmethods = [\"POST\"]\nupstream = \"b\"\n\
         [[routes]]\npath_prefix = \"/down\"\nupstream = \"down\"\n",
        b.addr,
        closed_port_addr()
    );
    let gw = Gateway::start(&cfg);
    let mut c = gw.conn();
    // Each followed on the same connection by a GET that must parse cleanly.
    for (path, status) in [("/nothing", 404), ("/post/x", 405), ("/down", 502)] {
        let mut req = format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes();
        req.extend_from_slice(&get("/api/x"));
        c.send(&req);
        let r = c.read_response_for_head();
        assert_eq!(r.status, status, "{r:?}");
        assert!(r.header("content-length").is_some(), "{r:?}");
        let r = c.read_response();
        assert_eq!(r.status, 200, "after HEAD {path}: {r:?}");
        assert!(
            c.buffered().is_empty(),
            "after HEAD {path}: {:?}",
            c.buffered()
        );
    }
}

/// A method the route does not allow is a 405 that says which methods it does (RFC 9110
/// §15.5.6: the Allow field is required), and the connection stays usable.
#[test]
fn method_not_allowed_is_405_with_allow() {
    let b = backend();
    let cfg = config_with(free_port(), b.addr, "", "", "methods = [\"GET\", \"POST\"]");
    let gw = Gateway::start(&cfg);
    let mut c = gw.conn();
    let r = c.request(b"DELETE /x HTTP/1.1\r\nHost: t\r\n\r\n");
    json_error(&r, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, HEAD"), "{r:?}");
    assert_eq!(c.request(&get("/size/1")).status, 200);
    // GET admits HEAD (RFC 9110 §9.3.2).
    c.send(b"HEAD /size/1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response_for_head().status, 200);
}

#[test]
fn refused_upstream_is_502_quickly() {
    let refused = closed_port_addr();
    let gw = gateway_for(refused, "[access_log]\nenabled = true\npath = \"-\"");
    let mut c = gw.conn();
    let started = Instant::now();
    let r = c.request(&get("/"));
    json_error(&r, 502);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The client connection survives a 502 for a bodiless request.
    json_error(&c.request(&get("/")), 502);
    // The access log names the server that refused (flushed within a second).
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        gw.log()
            .contains(&format!("\" 502 {} {refused} ", r.body.len())),
        "{}",
        gw.log()
    );
}

/// `GET path` on `c` is answered 504 once a 300 ms timeout has run out (not before, nor
/// much later).
fn assert_504_after_a_300ms_timeout(c: &mut common::Conn, path: &str) {
    let started = Instant::now();
    json_error(&c.request(&get(path)), 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[test]
fn response_timeout_is_504() {
    let b = backend();
    let gw = Gateway::start(&config_with(
        free_port(),
        b.addr,
        "",
        "",
        "response_timeout = \"300ms\"",
    ));
    let mut c = gw.conn();
    assert_504_after_a_300ms_timeout(&mut c, "/delay/2000");
    // A fast request after it still works (on a new upstream connection).
    let mut c = gw.conn();
    assert_eq!(c.request(&get("/size/3")).status, 200);
}

/// A TCP socket bound to a free loopback port, not yet listening (for listeners a test
/// shapes itself: its backlog, its buffers).
fn loopback_socket() -> socket2::Socket {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&addr.into()).unwrap();
    s
}

/// A loopback address whose accept queue is full, so SYNs are dropped and connects time out.
/// Returns the listener and the connections filling its queue (keep them alive).
fn blackhole() -> (
    socket2::Socket,
    Vec<std::net::TcpStream>,
    std::net::SocketAddr,
) {
    let s = loopback_socket();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(c) => fill.push(c),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (s, fill, addr),
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("accept queue of a backlog-0 listener never filled");
}

/// A gateway with `connect_timeout = "300ms"` in front of `target` (which must drop SYNs)
/// answers 504 after about that long.
fn assert_connect_timeout_is_504(target: std::net::SocketAddr) {
    let gw = Gateway::start(&config_with(
        free_port(),
        target,
        "",
        "",
        "connect_timeout = \"300ms\"",
    ));
    let mut c = gw.conn();
    assert_504_after_a_300ms_timeout(&mut c, "/");
}

#[test]
fn connect_timeout_is_504() {
    // 10.255.255.1 is unroutable on most networks, but this sandbox's network answers it;
    // a loopback listener with a full accept queue drops SYNs just as silently.
    let (_listener, _fill, target) = blackhole();
    assert_connect_timeout_is_504(target);
}

#[test]
fn connect_timeout_to_unroutable_address_is_504() {
    let target: std::net::SocketAddr = "10.255.255.1:81".parse().unwrap();
    // Skip where the network answers at once (or at all): only a silent drop times out.
    match std::net::TcpStream::connect_timeout(&target, Duration::from_millis(300)) {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
        other => {
            eprintln!("skipping: connect to {target} did not time out ({other:?})");
            return;
        }
    }
    assert_connect_timeout_is_504(target);
}

/// A raw upstream answering every request with `answer` and then closing.
fn answers(answer: &'static [u8]) -> RawUpstream {
    RawUpstream::start(move |mut c| {
        if c.read_head().is_some() {
            c.write(answer);
        }
    })
}

#[test]
fn garbage_status_line_is_502() {
    let up = answers(b"HTTP/1.1 2OO Fine\r\nContent-Length: 2\r\n\r\nok");
    let gw = gateway_for(up.addr, "");
    json_error(&gw.conn().request(&get("/")), 502);
    let up = answers(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
    let gw = gateway_for(up.addr, "");
    json_error(&gw.conn().request(&get("/")), 502);
}

#[test]
fn oversized_response_head_is_502() {
    let up = RawUpstream::start(|mut c| {
        if c.read_head().is_some() {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..2000 {
                head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(30)).as_bytes());
            }
            head.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            c.write(&head);
        }
    });
    let gw = gateway_for(up.addr, "");
    json_error(&gw.conn().request(&get("/")), 502);
}

#[test]
fn response_with_content_length_and_transfer_encoding_is_502() {
    let up = answers(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let gw = gateway_for(up.addr, "");
    json_error(&gw.conn().request(&get("/")), 502);
}

#[test]
fn truncated_fixed_body_is_cut_never_padded() {
    let up = RawUpstream::start(|mut c| {
        if c.read_head().is_some() {
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    c.send(&get("/"));
    let started = Instant::now();
    let all = c.read_to_close();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the cut must not hang"
    );
    let text = String::from_utf8_lossy(&all);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head arrived");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 1000"),
        "{head}"
    );
    assert_eq!(body, "0123456789", "exactly the bytes sent, then the close");
}

#[test]
fn chunked_body_cut_mid_chunk_closes_without_last_chunk() {
    let up = RawUpstream::start(|mut c| {
        if c.read_head().is_some() {
            c.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\nshort",
            );
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    c.send(&get("/"));
    let all = c.read_to_close();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("hello"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a terminating chunk would fake completeness: {text:?}"
    );
}

/// A raw upstream that answers the first request on each connection keep-alive, then closes
/// that idle connection shortly after (a server-side idle timeout racing the pool).
fn answers_once_then_closes() -> RawUpstream {
    RawUpstream::start(|mut c| {
        if let Some(head) = c.read_head() {
            if head.starts_with("POST") {
                let _ = c.read_body(4);
            }
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Dropping the stream closes it while it sits in the gateway's pool.
    })
}

#[test]
fn stale_pooled_connection_get_is_retried() {
    let up = answers_once_then_closes();
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    assert_eq!(c.request(&get("/")).status, 200);
    std::thread::sleep(Duration::from_millis(400));
    let r = c.request(&get("/"));
    assert_eq!(
        r.status, 200,
        "idempotent GET retried on a fresh connection"
    );
    assert_eq!(up.accepted(), 2);
}

#[test]
fn several_stale_pooled_connections_get_is_retried_on_a_fresh_one() {
    let up = answers_once_then_closes();
    let gw = gateway_for(up.addr, "");
    // Two concurrent requests leave two pooled connections, both of which the server closes.
    let slow = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let addr = gw.addr;
            let slow = slow.clone();
            std::thread::spawn(move || {
                let r = common::Conn::connect(addr).request(&get("/"));
                if r.status == 200 {
                    slow.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(slow.load(Ordering::SeqCst), 3);
    let pooled = up.accepted();
    std::thread::sleep(Duration::from_millis(400));
    let r = gw.conn().request(&get("/"));
    assert_eq!(
        r.status, 200,
        "retry must use a fresh connection, not another stale one ({pooled} were pooled)"
    );
}

/// A pooled connection the server closed while it idled is noticed before reuse, so even a
/// POST (which is never retried) goes out on a fresh connection instead of failing.
#[test]
fn post_after_the_server_closed_its_pooled_connection_succeeds() {
    let up = answers_once_then_closes();
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    assert_eq!(c.request(&get("/")).status, 200);
    std::thread::sleep(Duration::from_millis(400));
    let r = c.request(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody");
    assert_eq!(r.status, 200, "the closed pooled connection was not used");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(up.requests(), 2, "the POST reached the upstream once");
    assert_eq!(up.accepted(), 2);
}

/// A POST written to a pooled connection that the server then closes without answering is
/// never sent again: the client gets a 502 and the upstream saw the POST once.
#[test]
fn post_lost_on_a_pooled_connection_is_502_and_never_resent() {
    let up = RawUpstream::start(|mut c| {
        if c.read_head().is_some() {
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
        // The next request (the POST) is read, then the connection closes unanswered.
        if c.read_head().is_some() {
            let _ = c.read_body(4);
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    assert_eq!(c.request(&get("/")).status, 200);
    let r = c.request(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody");
    json_error(&r, 502);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(up.requests(), 2, "the POST reached the upstream once");
    assert_eq!(up.accepted(), 1, "no second connection carried it again");
}

/// Bytes an upstream sends after its response is complete (here a second, unsolicited
/// response that arrives a little later, or a body after a HEAD answer) belong to no request:
/// the connection is not reused, so they never reach another client.
#[test]
fn late_unsolicited_upstream_bytes_never_reach_the_next_client() {
    for (req, first) in [
        (
            get("/"),
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
        ),
        (
            b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..],
        ),
    ] {
        let up = RawUpstream::start(move |mut c| {
            while c.read_head().is_some() {
                c.write(first);
                std::thread::sleep(Duration::from_millis(100));
                c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!");
            }
        });
        let gw = gateway_for(up.addr, "");
        let r = gw.conn().request(&req);
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(300));
        let r = gw.conn().request(&get("/next"));
        assert_ne!(r.body, b"EVIL!", "another request's bytes were served");
        assert_eq!(up.accepted(), 2, "the tainted connection was reused");
    }
}

/// The same after a body relayed by splice, which moves exactly Content-Length bytes and
/// leaves anything after them in the socket.
#[test]
fn bytes_after_a_spliced_body_never_reach_the_next_client() {
    const N: usize = 8192;
    let up = RawUpstream::start(|mut c| {
        while c.read_head().is_some() {
            let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {N}\r\n\r\n").into_bytes();
            r.extend(std::iter::repeat_n(b'a', N));
            r.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!");
            c.write(&r);
        }
    });
    let gw = Gateway::start(&config_with(
        free_port(),
        up.addr,
        "",
        "",
        "relay = \"splice\"",
    ));
    let r = gw.conn().request(&get("/big"));
    assert_eq!(r.body.len(), N);
    std::thread::sleep(Duration::from_millis(100));
    let r = gw.conn().request(&get("/next"));
    assert_eq!(r.body.len(), N, "another request's bytes were served");
    assert_eq!(up.accepted(), 2);
}

/// Bytes beyond a response's Content-Length never reach the client, and that upstream
/// connection is not reused.
#[test]
fn stray_bytes_after_a_response_body_are_dropped_with_the_connection() {
    let up = RawUpstream::answering_each(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nBAD");
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    for _ in 0..3 {
        let r = c.request(&get("/"));
        assert_eq!(r.body, b"ok");
    }
    assert_eq!(up.accepted(), 3);
}

/// An HTTP/1.0 upstream without Content-Length: the body runs to its close. An HTTP/1.1
/// client gets it chunked (and keeps its connection); an HTTP/1.0 client gets it delimited by
/// the close, as sent.
#[test]
fn close_delimited_upstream_body_is_relayed() {
    let up = RawUpstream::start(|mut c| {
        if c.read_head().is_some() {
            c.write(b"HTTP/1.0 200 OK\r\nX-A: b\r\n\r\nabc");
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    let r = c.request(&get("/"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{r:?}");
    assert_eq!(
        c.request(&get("/")).body,
        b"abc",
        "the client connection was kept"
    );
    let mut c = gw.conn();
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let all = c.read_to_close();
    let t = String::from_utf8_lossy(&all).to_string();
    assert!(t.ends_with("\r\n\r\nabc"), "{t}");
    assert!(t.to_ascii_lowercase().contains("connection: close"), "{t}");
}

/// An upstream that resets in the middle of a close-delimited body: the client sees the body
/// cut off (no last chunk), never a response that looks complete (RFC 9112 §8).
#[test]
fn reset_in_a_close_delimited_body_reaches_the_client_as_cut_off() {
    let up = RawUpstream::start(|mut c| {
        if c.read_head().is_some() {
            c.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            c.write(&[b'r'; 30_000]);
            std::thread::sleep(Duration::from_millis(100));
            socket2::SockRef::from(&c.stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    c.send(&get("/"));
    let all = c.read_to_close();
    let t = String::from_utf8_lossy(&all).to_string();
    assert!(t.starts_with("HTTP/1.1 200"), "{}", &t[..t.len().min(200)]);
    assert!(
        t.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{}",
        &t[..t.len().min(300)]
    );
    assert!(
        !t.ends_with("0\r\n\r\n"),
        "a cut-off body was made to look complete"
    );
}

/// A chunked body whose first size line is malformed, before any of the body was relayed:
/// the client gets a 502 (not a bare close), and the connection is not reused.
#[test]
fn malformed_first_chunk_is_502() {
    let up =
        answers(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n");
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    json_error(&c.request(&get("/")), 502);
    assert!(c.is_closed(Duration::from_secs(3)));
    json_error(&gw.conn().request(&get("/")), 502);
    assert_eq!(
        up.accepted(),
        2,
        "the broken upstream connection was reused"
    );
}

/// An upstream sending interim responses forever gets a 502, not an endless relay.
#[test]
fn endless_interim_responses_are_502() {
    let up = RawUpstream::start(|mut c| {
        while c.read_head().is_some() {
            for _ in 0..40 {
                c.write(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    let r = c.request(&get("/"));
    assert_eq!(r.status, 502);
}

/// A response with a transfer coding besides chunked: ringway removes Transfer-Encoding and
/// decodes only chunked, so the gzip coding would be lost and the client would take
/// compressed bytes for the body. It is a 502 instead.
#[test]
fn response_with_unknown_transfer_coding_is_502() {
    let up = answers(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\n\x1f\x8b\x08\r\n0\r\n\r\n");
    let gw = gateway_for(up.addr, "");
    json_error(&gw.conn().request(&get("/")), 502);
}

/// Like the closed pooled connection, but the server resets it (SO_LINGER 0): the GET is
/// retried on a fresh connection, and a POST, noticed before reuse, goes out once on a fresh one.
#[test]
fn reset_pooled_connection_races() {
    let up = RawUpstream::start(|mut c| {
        if let Some(head) = c.read_head() {
            if head.starts_with("POST") {
                let _ = c.read_body(4);
            }
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            std::thread::sleep(Duration::from_millis(100));
            let _ = socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO));
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    assert_eq!(c.request(&get("/")).status, 200);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        c.request(&get("/")).status,
        200,
        "GET retried after a reset"
    );
    std::thread::sleep(Duration::from_millis(400));
    let before = up.requests();
    let r = c.request(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody");
    assert_eq!(r.status, 200, "the reset pooled connection was not used");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        up.requests(),
        before + 1,
        "the POST reached the upstream once"
    );
}

/// A refused connect sent nothing, so the request moves on to the upstream's next server: one
/// dead server out of two costs no failed requests (POSTs included), and all dead is still 502.
#[test]
fn refused_server_fails_over_to_the_next() {
    let b = backend();
    let dead = format!("127.0.0.1:{}", free_port());
    let cfg = config_with(free_port(), b.addr, "", "", "").replace(
        &format!("servers = [\"{}\"]", b.addr),
        &format!("servers = [\"{dead}\", \"{}\"]", b.addr),
    );
    let gw = Gateway::start(&cfg);
    let mut c = gw.conn();
    for i in 0..6 {
        assert_eq!(c.request(&get("/size/3")).status, 200, "GET {i}");
        let post = c.request(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(
            (post.status, post.body.as_slice()),
            (200, &b"hi"[..]),
            "POST {i}"
        );
    }
    let all_dead = config_with(free_port(), dead.parse().unwrap(), "", "", "");
    let gw = Gateway::start(&all_dead);
    json_error(&gw.conn().request(&get("/")), 502);
}

/// A gateway whose upstream lists a server that drops SYNs (its connects time out) before
/// `healthy`; `upstream_extra` sets the timeouts. Keep the returned blackhole alive.
fn behind_a_stuck_server(
    healthy: std::net::SocketAddr,
    upstream_extra: &str,
) -> (Gateway, (socket2::Socket, Vec<std::net::TcpStream>)) {
    let (listener, fill, stuck) = blackhole();
    let cfg = config_with(free_port(), healthy, "", upstream_extra, "").replace(
        &format!("servers = [\"{healthy}\"]"),
        &format!("servers = [\"{stuck}\", \"{healthy}\"]"),
    );
    (Gateway::start(&cfg), (listener, fill))
}

/// Passive health: a server whose connect timed out is skipped for `fail_timeout`, so only
/// the first request pays the connect timeout; the request itself fails over to the next server.
#[test]
fn timed_out_server_is_skipped_after_one_failure() {
    let b = backend();
    let (gw, _stuck) = behind_a_stuck_server(
        b.addr,
        "connect_timeout = \"300ms\"\nfail_timeout = \"30s\"",
    );
    let mut c = gw.conn();
    let first = Instant::now();
    assert_eq!(c.request(&get("/size/3")).status, 200);
    assert!(
        first.elapsed() >= Duration::from_millis(250),
        "{:?}",
        first.elapsed()
    );
    let rest = Instant::now();
    for _ in 0..6 {
        // Fresh connections too, so no pooled upstream connection hides a skipped server.
        assert_eq!(gw.conn().request(&get("/size/3")).status, 200);
    }
    assert!(
        rest.elapsed() < Duration::from_millis(250),
        "{:?}",
        rest.elapsed()
    );
}

/// `fail_timeout` counts from when the connect failed (a connect timeout takes its time), and
/// once it passes one request probes the server while the others keep skipping it, instead of
/// all of them stalling on a server that is still down.
#[test]
fn fail_timeout_counts_from_the_failure_and_one_request_probes() {
    let b = backend();
    let (gw, _stuck) = behind_a_stuck_server(
        b.addr,
        "connect_timeout = \"400ms\"\nfail_timeout = \"700ms\"",
    );
    let fast = |why: &str| {
        let t = Instant::now();
        assert_eq!(gw.conn().request(&get("/size/3")).status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{why}: {:?}",
            t.elapsed()
        );
    };
    assert_eq!(gw.conn().request(&get("/size/3")).status, 200);
    // Skipped for the whole 700 ms after the failure, not just the 300 ms left of it once
    // the 400 ms connect had timed out.
    for _ in 0..5 {
        fast("within fail_timeout");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    // fail_timeout has passed: the next request to pick the server probes it (and fails over
    // after the connect timeout); the requests meanwhile go to the healthy server at once.
    let probe = std::thread::scope(|s| {
        let probe = s.spawn(|| {
            let t = Instant::now();
            assert_eq!(gw.conn().request(&get("/size/3")).status, 200);
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..4 {
            fast("while one request probes");
        }
        probe.join().unwrap()
    });
    assert!(probe >= Duration::from_millis(350), "no probe: {probe:?}");
}

/// An upstream that answers (401, closing) as soon as it has the head, while the client is
/// still sending a copied body: the client gets the answer, told that the connection closes,
/// and a close; the access log its line; and the worker keeps serving. (The abandoned upload
/// used to take the buffer holding the request head with it; the access log then indexed an
/// empty buffer and the panic killed the worker.)
#[test]
fn early_answer_during_an_upload_keeps_the_worker_serving() {
    let up = RawUpstream::start(|mut c| {
        while c.read_head().is_some() {
            c.write(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope!",
            );
            // Never reads the body; holds the connection a while.
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    let log = common::temp_dir("early-answer").join("access.log");
    let top = format!("[access_log]\nenabled = true\npath = \"{}\"", log.display());
    for relay in ["copy", "auto"] {
        let cfg = config_with(
            free_port(),
            up.addr,
            &top,
            "",
            &format!("relay = \"{relay}\""),
        );
        let gw = Gateway::start(&cfg);
        for body in [
            // Chunked: always copied.
            &b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"[..],
            // A length the first read does not complete.
            &b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n0123456789"[..],
        ] {
            let mut c = gw.conn();
            c.send(body);
            let r = c.read_response();
            assert_eq!(r.status, 401, "{relay}: {r:?}");
            assert_eq!(r.body, b"nope!");
            assert_eq!(r.header("connection"), Some("close"), "{relay}: {r:?}");
            assert!(c.is_closed(Duration::from_secs(3)), "{relay}: closed after");
        }
        // The same (single) worker still answers.
        let r = gw.conn().request(&get("/after"));
        assert_eq!(r.status, 401, "{relay}: worker alive: {r:?}");
        assert!(!gw.log().contains("panicked"), "{}", gw.log());
    }
}

/// An upstream that answers as soon as it has the head and reads the body afterwards (keeping
/// its connection, as origins that reject or accept early do): ringway still delivers the
/// whole body, then serves the request pipelined behind it on the same client connection and
/// the same upstream connection, in every relay mode (as HAProxy does).
#[test]
fn early_answer_then_the_upload_is_still_delivered() {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let seen = got.clone();
    let up = RawUpstream::start(move |mut c| {
        while let Some(head) = c.read_head() {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly");
            // The answer is through before the body is read: the body is larger than all the
            // socket buffers on its way can hold, so the upload cannot end first.
            std::thread::sleep(Duration::from_millis(300));
            let body = c.read_body(len).map_or(0, |b| b.len());
            seen.lock().unwrap().push(body);
        }
    });
    const N: usize = 32 << 20;
    for relay in ["auto", "splice", "copy"] {
        let gw = Gateway::start(&config_with(
            free_port(),
            up.addr,
            "",
            "",
            &format!("relay = \"{relay}\""),
        ));
        let before = up.accepted();
        let mut c = gw.conn();
        let mut req =
            format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {N}\r\n\r\n").into_bytes();
        req.extend(ringway::backend::pattern(N));
        req.extend_from_slice(&get("/next"));
        let sender = send_in_thread(&c.stream, req);
        let r = c.read_response();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"early"[..]),
            "{relay}"
        );
        assert_eq!(r.header("connection"), None, "{relay}: kept alive: {r:?}");
        let r = c.read_response();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"early"[..]),
            "{relay}: the pipelined GET"
        );
        sender.join().unwrap();
        // The upstream notes the GET's (empty) body after answering it.
        common::wait_until(Duration::from_secs(2), || got.lock().unwrap().len() >= 2);
        assert_eq!(
            got.lock().unwrap().drain(..).collect::<Vec<_>>(),
            [N, 0],
            "{relay}: bodies the upstream read"
        );
        assert_eq!(
            up.accepted() - before,
            1,
            "{relay}: one upstream connection for both"
        );
    }
}

/// `Expect: 100-continue` goes to the upstream (RFC 9110 §10.1.1): an origin that refuses
/// the request at once stops the upload before it starts, since the client sees the refusal
/// and no 100 from ringway; an origin's own 100 reaches the client.
#[test]
fn expect_100_continue_is_answered_by_the_upstream() {
    let up = RawUpstream::start(|mut c| {
        while let Some(head) = c.read_head() {
            assert!(
                head.to_ascii_lowercase().contains("expect: 100-continue"),
                "{head}"
            );
            if head.starts_with("PUT") {
                c.write(b"HTTP/1.1 100 Continue\r\n\r\n");
                let body = c.read_body(5).unwrap_or_default();
                c.write(
                    format!(
                        "HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\n{}",
                        String::from_utf8_lossy(&body)
                    )
                    .as_bytes(),
                );
            } else {
                c.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno");
                return;
            }
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    c.send(
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 16777216\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(
        (r.status, r.body.as_slice()),
        (401, &b"no"[..]),
        "the refusal comes first: {r:?}"
    );
    assert_eq!(r.header("connection"), Some("close"));
    let mut c = gw.conn();
    c.send(b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.read_response().status, 100, "the origin's 100");
    c.send(b"hello");
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (201, &b"hello"[..]));
}

/// Out of file descriptors, the upstream connect fails on this host, not at the server: the
/// client gets a 503, the log says why, and the server is not marked down (once descriptors
/// are free again the next request is served, with no `fail_timeout` to sit out).
#[test]
fn connects_failing_for_want_of_descriptors_are_503_and_blame_no_server() {
    let b = backend();
    let upstream = "max_idle = 0\nfail_timeout = \"60s\"";
    let cfg = config_with(free_port(), b.addr, "", upstream, "");
    let gw = Gateway::start_limited(&cfg, 48);
    let mut c = gw.conn();
    assert_eq!(c.request(&get("/size/2")).status, 200);
    // Idle clients fill the descriptor table (the rest wait in the listen backlog).
    let fill: Vec<_> = (0..80)
        .map(|_| std::net::TcpStream::connect(gw.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let r = c.request(&get("/size/2"));
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        gw.log().contains("for want of local resources"),
        "{}",
        gw.log()
    );
    drop(fill);
    std::thread::sleep(Duration::from_millis(500));
    let r = c.request(&get("/size/2"));
    assert_eq!(r.status, 200, "the server was not marked down: {r:?}");
}

/// A client that stops sending its body mid-way is cut off after the header timeout, even
/// when the upstream has already started its answer (the exchange is full duplex): the
/// connection closes, and the worker keeps serving.
#[test]
fn stalled_request_body_is_cut_off() {
    let b = backend();
    for relay in ["copy", "auto"] {
        let cfg = config_with(
            free_port(),
            b.addr,
            "[access_log]\nenabled = true\npath = \"-\"",
            "",
            &format!("relay = \"{relay}\""),
        )
        .replace(
            "[[listeners]]\naddress",
            "[[listeners]]\nheader_timeout = \"1s\"\naddress",
        );
        let gw = Gateway::start(&cfg);
        let mut c = gw.conn();
        let started = Instant::now();
        // /echo answers while it reads: head and the first bytes come back at once.
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789");
        assert!(
            c.is_closed(Duration::from_secs(5)),
            "{relay}: a stalled body must not hold the connection"
        );
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900), "{relay}: {waited:?}");
        let r = gw.conn().request(&get("/"));
        assert_eq!(r.status, 200, "{relay}: worker alive");
        assert!(!gw.log().contains("panicked"), "{}", gw.log());
    }
}

/// The response timeout is a wait for the answer, counted from the end of the upload: an
/// upload that flows for longer than it (each piece well within the header timeout) is
/// answered, and an upstream that takes the whole body and then says nothing still gets a 504
/// about one response timeout later.
#[test]
fn response_timeout_counts_from_the_end_of_a_slow_upload() {
    const PIECES: usize = 8;
    const PIECE: usize = 1000;
    let up = RawUpstream::start(|mut c| {
        while let Some(head) = c.read_head() {
            let head = head.to_ascii_lowercase();
            let body = if head.contains("transfer-encoding: chunked") {
                c.read_chunked_body()
            } else {
                c.read_body(PIECES * PIECE)
            };
            if body.map(|b| b.len()) != Some(PIECES * PIECE) {
                return;
            }
            if head.starts_with("post /silent") {
                std::thread::sleep(Duration::from_secs(3));
                return;
            }
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nreceived");
        }
    });
    for relay in ["copy", "auto"] {
        let gw = Gateway::start(&config_with(
            free_port(),
            up.addr,
            "",
            "response_timeout = \"500ms\"",
            &format!("relay = \"{relay}\""),
        ));
        for (path, chunked) in [("/upload", false), ("/upload", true), ("/silent", false)] {
            let mut c = gw.conn();
            let framing = if chunked {
                "Transfer-Encoding: chunked"
            } else {
                "Content-Length: 8000"
            };
            c.send(format!("POST {path} HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n").as_bytes());
            // 8 pieces 150 ms apart: the upload lasts about 1.2 s, over twice the timeout.
            for _ in 0..PIECES {
                std::thread::sleep(Duration::from_millis(150));
                let piece = vec![b'u'; PIECE];
                if chunked {
                    c.send(&common::chunked(&piece, PIECE)[..PIECE + 7]);
                } else {
                    c.send(&piece);
                }
            }
            if chunked {
                c.send(b"0\r\n\r\n");
            }
            let sent = Instant::now();
            let r = c.read_response();
            if path == "/silent" {
                json_error(&r, 504);
                let waited = sent.elapsed();
                assert!(
                    waited >= Duration::from_millis(400) && waited < Duration::from_millis(1500),
                    "{relay}: 504 one timeout after the upload, not {waited:?}"
                );
            } else {
                assert_eq!(r.status, 200, "{relay} chunked={chunked}: {r:?}");
                assert_eq!(r.body, b"received");
            }
        }
    }
}

/// Most HTTP clients write the whole body before they read. When ringway answers before the
/// body is in (its own 413, an upstream's early 401), it closes in stages: a FIN after the
/// answer, then it reads and drops what the client still sends. Closing with those bytes
/// unread would make the kernel reset the connection, and the client would lose the answer
/// (its write fails, or the reset discards the response it had not read yet).
#[test]
fn early_answers_reach_clients_that_write_their_whole_body_first() {
    use std::io::Write;
    const BODY: usize = 8 << 20;
    let up = RawUpstream::start(|mut c| {
        if c.read_head().is_some() {
            c.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\nConnection: close\r\n\r\ndenied");
            // Reads and drops the body, as real servers do after answering early.
            let _ = c.read_body(BODY);
        }
    });
    let b = backend();
    let limited = Gateway::start(&config_with(
        free_port(),
        b.addr,
        "[limits]\nmax_body_bytes = \"1MiB\"",
        "",
        "",
    ));
    let early = gateway_for(up.addr, "");
    for (gw, status, body) in [(&limited, 413, None), (&early, 401, Some(&b"denied"[..]))] {
        for round in 0..3 {
            let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            let head = format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n");
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&vec![b'x'; BODY])
                .unwrap_or_else(|e| panic!("{status} round {round}: body write failed: {e}"));
            // The answer, read by its framing: the connection closes after it, unless the
            // upstream took the whole body first and the exchange ended normally (kept alive).
            let r = common::Conn::new(s).read_response();
            assert_eq!(r.status, status, "round {round}: {r:?}");
            if let Some(body) = body {
                assert_eq!(r.body, body, "round {round}");
            }
        }
    }
}

/// An upstream that takes the request head and then stops reading the body (and never
/// answers) is a timeout, not a closed connection: 504 about one response timeout after it
/// stopped taking bytes, in every relay mode.
#[test]
fn upstream_that_stops_reading_the_upload_is_504() {
    let up = RawUpstream::start(|mut c| {
        if c.read_head().is_some() {
            std::thread::sleep(Duration::from_secs(4));
        }
    });
    for relay in ["auto", "copy"] {
        let gw = Gateway::start(&config_with(
            free_port(),
            up.addr,
            "",
            "response_timeout = \"1s\"",
            &format!("relay = \"{relay}\""),
        ));
        let mut c = gw.conn();
        let mut req = b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\n".to_vec();
        req.extend_from_slice(&vec![b'u'; 50_000_000]);
        let started = Instant::now();
        let sender = common::send_in_thread(&c.stream, req);
        let r = c.read_response();
        assert_eq!(r.status, 504, "{relay}: {r:?}");
        // About one response timeout after the upload stalled (a tick or two late), not one
        // for the stalled write and another for the answer.
        let took = started.elapsed();
        assert!(took < Duration::from_millis(2200), "{relay}: {took:?}");
        drop(c);
        let _ = sender.join();
    }
}

/// ringway's answers to heads it rejects end with their head too when the request is a HEAD
/// (the first word says so even when the head did not parse).
#[test]
fn rejected_head_requests_get_no_body() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    for raw in [
        &b"HEAD /a%zz HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"HEAD /a HTTP/1.1\r\nHost: t\r\nExpect: magic\r\n\r\n",
        b"HEAD /a HTTP/1.1\r\n\r\n",
    ] {
        let mut c = gw.conn();
        c.send(raw);
        let r = c.read_response_for_head();
        assert!(r.status >= 400, "{r:?}");
        assert!(c.is_closed(Duration::from_secs(3)));
        assert!(
            c.buffered().is_empty(),
            "{:?}: body after the head: {:?}",
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(c.buffered())
        );
    }
}

/// RFC 9112 §3.2.4: an absolute-form OPTIONS with an empty path and no query is forwarded as
/// `OPTIONS *`; `OPTIONS *` itself is routed as `/` and forwarded as sent.
#[test]
fn server_wide_options_is_forwarded_as_asterisk() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let up = RawUpstream::start(move |mut c| {
        while let Some(head) = c.read_head() {
            log.lock()
                .unwrap()
                .push(head.lines().next().unwrap_or("").to_string());
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    for (raw, want) in [
        (
            &b"OPTIONS http://t HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            "OPTIONS * HTTP/1.1",
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
            "OPTIONS * HTTP/1.1",
        ),
        (
            b"OPTIONS http://t?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
            "OPTIONS /?x=1 HTTP/1.1",
        ),
    ] {
        assert_eq!(c.request(raw).status, 200);
        assert_eq!(seen.lock().unwrap().last().map(String::as_str), Some(want));
    }
}

/// RFC 9112 §6.1: an HTTP/1.0 response with Transfer-Encoding has faulty framing. Its chunked
/// body is still decoded for the client, but the upstream connection is never used again,
/// whatever its `Connection: keep-alive` says.
#[test]
fn chunked_from_an_http10_upstream_is_not_reused() {
    let up = RawUpstream::start(|mut c| {
        while c.read_head().is_some() {
            c.write(
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3\r\nabc\r\n0\r\n\r\n",
            );
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    for _ in 0..3 {
        let r = c.request(&get("/"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
    }
    assert_eq!(
        up.accepted(),
        3,
        "an HTTP/1.0 chunked response's connection was reused"
    );
}

/// ringway's own answers to an HTTP/1.0 client that asked to keep the connection say
/// `Connection: keep-alive` when it is kept (else the client waits for a close that never
/// comes: `ab -k` hangs), and the connection then serves the next request.
#[test]
fn own_answers_keep_http10_connections_alive_by_saying_so() {
    let nothing_there = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = gateway_for(nothing_there, "");
    let mut c = gw.conn();
    for _ in 0..2 {
        let r = c.request(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(r.status, 502);
        assert_eq!(
            r.header("connection"),
            Some("keep-alive"),
            "{:?}",
            r.headers
        );
    }
    // Without the request for it, an HTTP/1.0 connection closes after the answer.
    let r = c.request(b"GET /x HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 502);
    assert!(c.is_closed(Duration::from_secs(2)));
}

/// `send_timeout` counts from the client's last progress, as nginx's does: a client that reads
/// a large response slowly but steadily is never cut (the kernel's TCP_USER_TIMEOUT would reset
/// it within a few timeouts: its window only reopens in small steps), in any relay mode; a
/// client that stops reading is cut.
#[test]
fn send_timeout_cuts_stalled_readers_not_slow_ones() {
    use std::io::{Read, Write};
    let b = backend();
    let small_window = |addr: std::net::SocketAddr| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(16 * 1024).unwrap();
        s.connect(&addr.into()).unwrap();
        let s: std::net::TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    std::thread::scope(|scope| {
        for relay in ["auto", "copy"] {
            let b = &b;
            scope.spawn(move || {
                let gw = Gateway::start(
                    &config_with(free_port(), b.addr, "", "", &format!("relay = \"{relay}\""))
                        .replace("[[upstreams]]", "send_timeout = \"1s\"\n\n[[upstreams]]"),
                );
                // 1 KiB every 100 ms (~10 KB/s) for 5 s: five send timeouts, always reading.
                let mut s = small_window(gw.addr);
                s.write_all(&get("/size/20000000")).unwrap();
                let mut buf = vec![0u8; 1024];
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(5) {
                    match s.read(&mut buf) {
                        Ok(n) if n > 0 => {}
                        r => panic!(
                            "{relay}: slow reader cut after {:?}: {r:?}",
                            started.elapsed()
                        ),
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                // A client that stops reading is cut about one send timeout (and a tick or
                // two) later: after a pause of 1.8 s it finds the stream ended well short of
                // the body (had the gateway not cut it yet, reading again would be progress).
                let mut s = small_window(gw.addr);
                s.write_all(&get("/size/200000000")).unwrap();
                std::thread::sleep(Duration::from_millis(1800));
                let mut buf = vec![0u8; 65536];
                let mut total = 0usize;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                    assert!(total < 100_000_000, "{relay}: stalled reader never cut");
                }
            });
        }
    });
}

/// A pooled upstream connection that the server closes while it idles is closed by the
/// gateway within about a second (the worker's sweep polls its idle connections), not left in
/// CLOSE-WAIT holding a descriptor until `idle_timeout`.
#[test]
fn pooled_connections_closed_by_the_server_are_released() {
    let up = RawUpstream::start(|mut c| {
        if c.read_head().is_some() {
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            // A short keep-alive timeout on the server's side.
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let gw = gateway_for(up.addr, "");
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", gw.pid()))
            .unwrap()
            .count()
    };
    let mut c = gw.conn();
    assert_eq!(c.request(&get("/")).status, 200);
    let with_pooled = fds();
    assert!(
        common::wait_until(Duration::from_secs(3), || fds() < with_pooled),
        "the closed pooled connection is still open after 3 s"
    );
    // The client connection is untouched and the next request connects afresh.
    assert_eq!(c.request(&get("/")).status, 200);
    assert_eq!(up.accepted(), 2);
}

/// An upstream that reads a request body slowly but steadily is busy, not late: neither the
/// upload's writes nor the wait for its answer time out while it keeps taking bytes, though
/// each pause is longer than `response_timeout` (the body sits in the kernel's buffers), in
/// every relay mode. (It stopping altogether is a 504: the test above.)
#[test]
fn upstream_reading_the_upload_slowly_is_not_cut() {
    use std::io::{Read, Write};
    let body = 300_000usize;
    let s = loopback_socket();
    s.set_recv_buffer_size(16 * 1024).unwrap();
    s.listen(8).unwrap();
    let upstream = s.local_addr().unwrap().as_socket().unwrap();
    let listener: std::net::TcpListener = s.into();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                // About 100 KB/s: 3 s for the body, three response timeouts.
                let (mut got, mut buf) = (Vec::new(), [0u8; 1024]);
                let started = Instant::now();
                loop {
                    let Ok(n) = c.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let head = got.windows(4).position(|w| w == b"\r\n\r\n");
                    if head.is_some_and(|h| got.len() >= h + 4 + body) {
                        break;
                    }
                    let due = Duration::from_secs_f64(got.len() as f64 / 100_000.0);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            });
        }
    });
    std::thread::scope(|scope| {
        for relay in ["auto", "copy"] {
            scope.spawn(move || {
                let gw = Gateway::start(&config_with(
                    free_port(),
                    upstream,
                    "",
                    "response_timeout = \"1s\"",
                    &format!("relay = \"{relay}\""),
                ));
                let mut c = gw.conn();
                let mut req =
                    format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {body}\r\n\r\n")
                        .into_bytes();
                req.extend_from_slice(&vec![b'u'; body]);
                let sender = common::send_in_thread(&c.stream, req);
                let r = c.read_response();
                assert_eq!(
                    (r.status, r.body.as_slice()),
                    (200, &b"ok"[..]),
                    "{relay}: {r:?}"
                );
                let _ = sender.join();
            });
        }
    });
}
