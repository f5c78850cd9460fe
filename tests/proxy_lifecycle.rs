//! Connection and process lifecycle: clients leaving mid-exchange, graceful shutdown, both I/O
//! drivers, the listener's connection limit, `ringway validate`, and the access log.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{backend, config, free_port, gateway_for, get, send_in_thread, temp_dir, Gateway};
use ringway::backend::{pattern, Backend};

/// Three requests on a fresh client connection all succeed, and the backend has then
/// accepted exactly two connections: the abandoned one was not pooled (`why` otherwise).
fn assert_served_on_a_new_upstream_connection(b: &Backend, gw: &Gateway, why: &str) {
    let mut c = gw.conn();
    for _ in 0..3 {
        let r = c.request(&get("/size/5"));
        assert_eq!((r.status, r.body), (200, pattern(5)));
    }
    assert_eq!(b.accepted(), 2, "{why}");
}

#[test]
fn client_leaving_mid_request_body_does_not_reuse_the_upstream_connection() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    assert_eq!(gw.conn().request(&get("/size/5")).status, 200);
    assert_eq!(b.accepted(), 1);
    {
        let mut c = gw.conn();
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
        c.send(&[b'x'; 1000]);
        std::thread::sleep(Duration::from_millis(100));
    } // closed with 99,000 body bytes owed
    std::thread::sleep(Duration::from_millis(200));
    assert_served_on_a_new_upstream_connection(
        &b,
        &gw,
        "the half-used upstream connection was not pooled",
    );
}

#[test]
fn client_leaving_mid_response_does_not_reuse_the_upstream_connection() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    {
        let mut c = gw.conn();
        c.send(&get("/size/16777216"));
        let mut part = [0u8; 1000];
        let _ = std::io::Read::read(&mut c.stream, &mut part);
    } // closed with most of 16 MiB unread
    std::thread::sleep(Duration::from_millis(500));
    assert_served_on_a_new_upstream_connection(
        &b,
        &gw,
        "the half-read upstream connection was not pooled",
    );
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    let b = backend();
    let mut gw = Gateway::start(&config(free_port(), b.addr, "drain_timeout = \"5s\""));
    let mut c = gw.conn();
    c.send(&get("/delay/1000"));
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    gw.sigterm();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect_timeout(&gw.addr, Duration::from_millis(500)).is_err(),
        "new connections are refused while draining"
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "the in-flight request completes");
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "draining closes kept connections"
    );
    let status = gw
        .wait_exit(Duration::from_secs(5))
        .expect("exits within drain_timeout");
    assert!(status.success(), "{status}\n{}", gw.log());
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
}

/// Requests still running at `drain_timeout` are cut, and still logged: one waiting for its
/// answer gets a 504 through the usual path, an event stream in the middle of its body is cut
/// off (a cut-off body, never one made to look complete) and logged with its status and the
/// bytes it got. The process exits 0 soon after.
#[test]
fn sigterm_gives_up_on_requests_past_drain_timeout() {
    let b = backend();
    let dir = temp_dir("cutlog");
    let log = dir.join("access.log");
    let top = format!(
        "drain_timeout = \"300ms\"\n[access_log]\nenabled = true\npath = \"{}\"",
        log.display()
    );
    let mut gw = Gateway::start(&config(free_port(), b.addr, &top));
    let mut waiting = gw.conn();
    waiting.send(&get("/delay/5000"));
    let mut stream = gw.conn();
    stream.send(&get("/sse?count=100&interval_ms=50"));
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    gw.sigterm();
    let status = gw
        .wait_exit(Duration::from_secs(4))
        .expect("exits soon after drain_timeout");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    assert!(status.success(), "{status}");
    let answer = waiting.read_response();
    assert_eq!(answer.status, 504, "{}", answer.body_str());
    let events = String::from_utf8_lossy(&stream.read_to_close()).into_owned();
    assert!(events.starts_with("HTTP/1.1 200"), "{events:?}");
    assert!(
        !events.ends_with("0\r\n\r\n"),
        "a cut stream looks complete"
    );
    assert!(
        gw.log().contains("cutting requests still in flight"),
        "{}",
        gw.log()
    );
    let text = std::fs::read_to_string(&log).expect("access log written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines.iter().any(|l| l.contains("\"GET /delay/5000\" 504 ")),
        "{text}"
    );
    let sse = lines
        .iter()
        .find(|l| l.contains("\"GET /sse?count=100&interval_ms=50\" 200 "))
        .unwrap_or_else(|| panic!("no line for the event stream: {text}"));
    let bytes: u64 = sse
        .split(" 200 ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("bytes field");
    assert!(bytes > 0, "{sse}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A body whose upstream stalls half-way is cut at `drain_timeout` too, and still logged (the
/// relay, copied or spliced, ends through its client watch once the drain shuts the clients
/// down, instead of being dropped where it stood).
#[test]
fn sigterm_cuts_bodies_stalled_upstream_with_their_log_lines() {
    let up = common::RawUpstream::start(|mut c| {
        let Some(head) = c.read_head() else { return };
        let len = if head.contains("/big") {
            1_000_000
        } else {
            1000
        };
        c.write(format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n0123456789").as_bytes());
        c.wait_closed(Duration::from_secs(8));
    });
    let dir = temp_dir("cut-stalled");
    let log = dir.join("access.log");
    let top = format!(
        "drain_timeout = \"300ms\"\n[access_log]\nenabled = true\npath = \"{}\"",
        log.display()
    );
    let mut gw = Gateway::start(&config(free_port(), up.addr, &top));
    let mut conns = Vec::new();
    for path in ["/small", "/big"] {
        let mut c = gw.conn();
        c.send(&get(path));
        conns.push(c);
    }
    std::thread::sleep(Duration::from_millis(400));
    let sent = Instant::now();
    gw.sigterm();
    let status = gw.wait_exit(Duration::from_secs(4)).expect("exits");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log).expect("access log written");
    for path in ["/small", "/big"] {
        let want = format!("\"GET {path}\" 200 ");
        assert!(text.contains(&want), "no line for {path}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// GET, POST echo of 1 MiB, pipelining and a 502 on one driver.
fn driver_subset(driver: &str) {
    let b = backend();
    let gw = gateway_for(b.addr, &format!("io_driver = \"{driver}\""));
    let mut c = gw.conn();
    let r = c.request(&get("/size/100"));
    assert_eq!((r.status, r.body), (200, pattern(100)), "{driver}");
    let body = pattern(1 << 20);
    let mut req = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let writer = send_in_thread(&c.stream, req);
    let r = c.read_response();
    writer.join().unwrap();
    assert!(r.status == 200 && r.body == body, "{driver}: 1 MiB echo");
    let mut pipe = Vec::new();
    for n in [1, 70_000, 3] {
        pipe.extend_from_slice(&get(&format!("/chunked/{n}")));
    }
    c.send(&pipe);
    for n in [1, 70_000, 3] {
        assert_eq!(
            c.read_response().body,
            pattern(n),
            "{driver}: pipelined {n}"
        );
    }
    let dead = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = gateway_for(dead, &format!("io_driver = \"{driver}\""));
    assert_eq!(gw.conn().request(&get("/")).status, 502, "{driver}");
}

#[test]
fn epoll_driver_subset() {
    driver_subset("epoll");
}

#[test]
fn io_uring_driver_subset() {
    driver_subset("io_uring");
}

/// A gateway whose listener takes at most two connections, once the connection with which
/// `Gateway::start` probed its port has gone.
fn gateway_with_two_connections(backend: std::net::SocketAddr) -> Gateway {
    let port = free_port();
    let cfg = config(port, backend, "").replace(
        &format!("address = \"127.0.0.1:{port}\"\n"),
        &format!("address = \"127.0.0.1:{port}\"\nmax_connections = 2\n"),
    );
    let gw = Gateway::start(&cfg);
    std::thread::sleep(Duration::from_millis(200));
    gw
}

#[test]
fn listener_connection_limit_answers_503_at_once() {
    let b = backend();
    let gw = gateway_with_two_connections(b.addr);
    // Two requests in flight fill the limit (an idle connection would make room instead:
    // see the next test).
    let mut first = gw.conn();
    first.send(&get("/delay/4000"));
    let mut second = gw.conn();
    second.send(&get("/delay/4000"));
    std::thread::sleep(Duration::from_millis(100));
    // Turned away at once, and each gets its 503 even when it reads only after its request
    // went out (an unread request must not make the close a reset that destroys the answer).
    for round in 0..10 {
        let started = Instant::now();
        let mut third = gw.conn();
        // Half the rounds send a 256 KiB upload the gateway will never read.
        let sender = if round % 2 == 0 {
            third.send(&get("/size/1"));
            None
        } else {
            let mut req =
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 262144\r\n\r\n".to_vec();
            req.extend_from_slice(&vec![b'x'; 262144]);
            Some(send_in_thread(&third.stream, req))
        };
        std::thread::sleep(Duration::from_millis(50));
        // Read to the end by hand: the answer, then a clean EOF, not a reset.
        let mut all = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            match std::io::Read::read(&mut third.stream, &mut chunk) {
                Ok(0) => break "eof",
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
                Err(e) => panic!("round {round}: {e}"),
            }
        };
        if let Some(s) = sender {
            let _ = s.join();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 503"), "round {round}: {text:?}");
        assert_eq!(
            end, "eof",
            "round {round}: the 503 must end in a clean close"
        );
    }
    // The two admitted connections are unaffected; once one leaves, a new one is admitted.
    assert_eq!(first.read_response().status, 200);
    assert_eq!(second.read_response().status, 200);
    assert_eq!(first.request(&get("/size/1")).status, 200);
    drop(second);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(gw.conn().request(&get("/size/2")).status, 200);
    // The turned-away connection has its access-log line (flushed within a second).
    std::thread::sleep(Duration::from_millis(1200));
    assert!(gw.log().contains("\"- -\" 503 "), "{}", gw.log());
}

/// At the connection limit an idle connection makes room for a new client (as nginx reuses
/// idle connections), so idle clients cannot lock new ones out until `keepalive_timeout`, nor
/// clients that connect and send nothing until `header_timeout`; the oldest idle one is closed.
#[test]
fn idle_connections_make_room_at_the_limit() {
    let b = backend();
    let gw = gateway_with_two_connections(b.addr);
    let mut first = gw.conn();
    assert_eq!(first.request(&get("/size/1")).status, 200);
    std::thread::sleep(Duration::from_millis(150));
    let mut second = gw.conn();
    assert_eq!(second.request(&get("/size/1")).status, 200);
    let mut third = gw.conn();
    assert_eq!(third.request(&get("/size/1")).status, 200);
    assert!(
        first.is_closed(Duration::from_secs(2)),
        "the oldest idle one was closed"
    );
    assert_eq!(second.request(&get("/size/1")).status, 200);
    drop((second, third));
    std::thread::sleep(Duration::from_millis(200));
    // Connections that never send a byte: the oldest makes room too.
    let mut silent = gw.conn();
    std::thread::sleep(Duration::from_millis(150));
    let _silent2 = gw.conn();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(gw.conn().request(&get("/size/1")).status, 200);
    assert!(
        silent.is_closed(Duration::from_secs(2)),
        "the oldest silent one was closed"
    );
}

fn validate(text: &str) -> std::process::Output {
    let dir = temp_dir("validate");
    let path = dir.join("ringway.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .expect("run ringway validate");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn validate_names_file_key_and_line() {
    let good = config(8080, "127.0.0.1:9000".parse().unwrap(), "");
    let out = validate(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = good.replace(
        "upstream = \"backend\"",
        "upstream = \"backend\"\nstrip_prefx = true",
    );
    let line = bad
        .lines()
        .position(|l| l.starts_with("strip_prefx"))
        .unwrap()
        + 1;
    let out = validate(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ringway.toml"), "{err}");
    assert!(
        err.contains("routes[0]") && err.contains("strip_prefx"),
        "{err}"
    );
    assert!(err.contains(&format!("line {line}")), "{err}");

    let bad = good.replace("workers = 1", "workers = 1\ndrain_timeout = \"soon\"");
    let out = validate(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("drain_timeout") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn access_log_has_one_line_per_request() {
    let b = backend();
    let dir = temp_dir("alog");
    let log = dir.join("access.log");
    let top = format!("[access_log]\nenabled = true\npath = \"{}\"", log.display());
    let mut gw = Gateway::start(&config(free_port(), b.addr, &top));
    let mut c = gw.conn();
    c.request(&get("/size/10"));
    c.request(&get("/status/404"));
    c.request(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    c.request(&get("/delay/1?x=1"));
    drop(c);
    // A client that breaks off its upload: nothing to answer, logged as a 400 (as nginx).
    let mut c = gw.conn();
    c.send(b"POST /size/0 HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789");
    std::thread::sleep(Duration::from_millis(200));
    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    // ringway's own answer (a 400: no Host) is logged with its body's length, and with the
    // time from the head's first bytes.
    let mut c = gw.conn();
    c.send(b"GET / HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(300));
    let bad = c.request(b"\r\n");
    assert_eq!(bad.status, 400);
    let own = format!(" 400 {} ", bad.body.len());
    gw.sigterm();
    assert!(gw
        .wait_exit(Duration::from_secs(5))
        .is_some_and(|s| s.success()));
    let text = std::fs::read_to_string(&log).expect("access log written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines[5].contains(&own), "{:?} lacks {own:?}", lines[5]);
    let us: u64 = lines[5]
        .rsplit(' ')
        .next()
        .and_then(|d| d.strip_suffix("us"))
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    assert!(us >= 250_000, "{:?}: the head took 300 ms", lines[5]);
    // The service log goes to a file here: plain text, no colour codes.
    assert!(!gw.log().contains('\x1b'), "{:?}", gw.log());
    for (line, want) in lines.iter().zip([
        "\"GET /size/10\" 200",
        "\"GET /status/404\" 404",
        "\"POST /echo\" 200",
        "\"GET /delay/1?x=1\" 200",
        "\"POST /size/0\" 400",
    ]) {
        assert!(line.contains(want), "{line:?} lacks {want:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Log rotation: after the file is moved away, SIGUSR1 makes ringway reopen its configured
/// path; lines of requests served before stay in the moved file (buffered ones included),
/// later ones go to the new one.
#[test]
fn sigusr1_reopens_the_access_log_after_rotation() {
    let b = backend();
    let dir = temp_dir("alog-rotate");
    let log = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let top = format!("[access_log]\nenabled = true\npath = \"{}\"", log.display());
    let mut gw = Gateway::start(&config(free_port(), b.addr, &top));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let wait_for = |what: &dyn Fn() -> bool| common::wait_until(Duration::from_secs(5), what);
    assert_eq!(gw.conn().request(&get("/before")).status, 200);
    assert!(
        wait_for(&|| read(&log).contains("/before")),
        "first line flushed"
    );
    // Served just before the rotation, still in the worker's buffer when the file moves:
    // it belongs to the rotated file all the same.
    assert_eq!(gw.conn().request(&get("/just-before")).status, 200);
    std::fs::rename(&log, &rotated).unwrap();
    gw.signal(nix::sys::signal::Signal::SIGUSR1);
    assert!(
        wait_for(&|| gw.log().contains("access log reopened")),
        "{}",
        gw.log()
    );
    assert_eq!(gw.conn().request(&get("/after")).status, 200);
    gw.sigterm();
    assert!(gw
        .wait_exit(Duration::from_secs(5))
        .is_some_and(|s| s.success()));
    let (old, new) = (read(&rotated), read(&log));
    assert!(
        old.contains("/before") && old.contains("/just-before"),
        "{old}"
    );
    assert!(!old.contains("/after"), "{old}");
    assert!(new.contains("/after") && !new.contains("before"), "{new}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A partial head gets 408 after header_timeout; an idle keep-alive connection is kept through
/// the cold (bufferless) wait and closed at keepalive_timeout; a silent new one at header_timeout.
#[test]
fn header_and_keepalive_timeouts_epoll() {
    header_and_keepalive_timeouts("epoll");
}

#[test]
fn header_and_keepalive_timeouts_io_uring() {
    header_and_keepalive_timeouts("io_uring");
}

fn header_and_keepalive_timeouts(driver: &str) {
    let b = backend();
    let port = free_port();
    let cfg = config(port, b.addr, &format!("io_driver = \"{driver}\"")).replace(
        &format!("address = \"127.0.0.1:{port}\"\n"),
        &format!("address = \"127.0.0.1:{port}\"\nheader_timeout = \"300ms\"\nkeepalive_timeout = \"1s\"\n"),
    );
    let gw = Gateway::start(&cfg);
    let mut c = gw.conn();
    c.send(b"GET / HTTP/1.1\r\nHost");
    let t = Instant::now();
    let r = c.read_response();
    assert_eq!(r.status, 408);
    assert!(t.elapsed() < Duration::from_secs(2));
    // keepalive: used in cold phase
    let mut c = gw.conn();
    assert_eq!(c.request(&get("/size/1")).status, 200);
    std::thread::sleep(Duration::from_millis(750));
    assert_eq!(c.request(&get("/size/1")).status, 200);
    let t = Instant::now();
    assert!(c.is_closed(Duration::from_secs(3)));
    let e = t.elapsed();
    assert!(
        e > Duration::from_millis(800) && e < Duration::from_millis(1500),
        "{e:?}"
    );
    // a new connection that sends nothing: closed after header_timeout
    let mut c = gw.conn();
    let t = Instant::now();
    assert!(c.is_closed(Duration::from_secs(3)));
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

/// The raw upstream sees its connection closed when the client leaves mid-body or mid-response
/// (nothing half-used is kept open, let alone pooled).
#[test]
fn upstream_sees_the_close_when_the_client_leaves() {
    // Each connection notes whether it saw the gateway let go.
    let up = common::RawUpstream::start_counting(|mut c| {
        let Some(head) = c.read_head() else {
            return false;
        };
        if head.starts_with("POST") {
            let _ = c.read_body(10);
            return c.wait_closed(Duration::from_secs(3));
        }
        c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if std::io::Write::write_all(&mut c.stream, &[b'z'; 1000]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    });
    let gw = gateway_for(up.addr, "");
    {
        let mut c = gw.conn();
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789");
        std::thread::sleep(Duration::from_millis(200));
    }
    {
        let mut c = gw.conn();
        c.send(&get("/"));
        let mut part = [0u8; 100];
        let _ = std::io::Read::read(&mut c.stream, &mut part);
    }
    common::wait_until(Duration::from_secs(4), || up.noted() >= 2);
    assert_eq!(up.noted(), 2, "upstream saw both closes");
}

/// A client that leaves while the upstream has not answered yet (a slow query, an event
/// stream that sends its head with its first event, a WebSocket handshake) releases the
/// upstream connection within a tick or two, not at the answer or the response timeout; the
/// access log says 499, as nginx's does. With and without a request body, closed or reset.
#[test]
fn client_leaving_before_the_answer_releases_the_upstream() {
    let up = common::RawUpstream::start_counting(|mut c| {
        let Some(head) = c.read_head() else {
            return false;
        };
        if head.starts_with("POST") {
            let _ = c.read_body(5);
        }
        // Never answers; notes when the gateway lets go.
        c.wait_closed(Duration::from_secs(5))
    });
    let dir = temp_dir("client-gone");
    let log = dir.join("access.log");
    let top = format!("[access_log]\nenabled = true\npath = \"{}\"", log.display());
    let mut gw = Gateway::start(&config(free_port(), up.addr, &top));
    let requests: [&[u8]; 3] = [
        b"GET /events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n",
        b"POST /query HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    ];
    for (i, raw) in requests.iter().enumerate() {
        let c = gw.conn();
        let mut s = c.stream;
        std::io::Write::write_all(&mut s, raw).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        if i == 1 {
            // A reset instead of a close.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        let left = Instant::now();
        drop(s);
        common::wait_until(Duration::from_secs(3), || up.noted() > i as u64);
        assert!(
            left.elapsed() < Duration::from_secs(1),
            "request {i}: upstream held {:?} after the client left",
            left.elapsed()
        );
    }
    gw.sigterm();
    assert!(gw.wait_exit(Duration::from_secs(5)).is_some());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        text.lines().filter(|l| l.contains("\" 499 ")).count(),
        3,
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that leaves in the middle of a body with a length, while the upstream pauses,
/// releases the upstream within a tick or two too (not at the upstream's next bytes or the
/// response timeout): copied bodies and spliced ones, as streamed ones already did.
#[test]
fn client_leaving_mid_body_releases_the_upstream() {
    let up = common::RawUpstream::start_counting(|mut c| {
        let Some(head) = c.read_head() else {
            return false;
        };
        let len = if head.contains("/big") {
            1_000_000
        } else {
            1000
        };
        c.write(format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\nhello").as_bytes());
        // Pauses mid-body; notes when the gateway lets go.
        c.wait_closed(Duration::from_secs(8))
    });
    let mut n = 0;
    for relay in ["auto", "copy"] {
        let route = format!("relay = \"{relay}\"\nresponse_timeout = \"20s\"");
        let gw = Gateway::start(&common::config_with(free_port(), up.addr, "", "", &route));
        for path in ["/small", "/big"] {
            let mut c = gw.conn();
            c.send(&get(path));
            let mut head = [0u8; 38];
            std::io::Read::read_exact(&mut c.stream, &mut head).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let left = Instant::now();
            drop(c);
            n += 1;
            common::wait_until(Duration::from_secs(3), || up.noted() >= n);
            assert!(
                left.elapsed() < Duration::from_secs(1),
                "{relay} {path}: upstream held {:?} after the client left",
                left.elapsed()
            );
        }
    }
}

/// Idle keep-alive connections do not hold up a shutdown: with nothing in flight the gateway
/// exits at once, well inside drain_timeout.
#[test]
fn sigterm_with_only_idle_connections_exits_promptly() {
    let b = backend();
    let mut gw = Gateway::start(&config(free_port(), b.addr, "drain_timeout = \"5s\""));
    let mut hot = gw.conn();
    assert_eq!(hot.request(&get("/size/1")).status, 200);
    let mut cold = gw.conn();
    assert_eq!(cold.request(&get("/size/1")).status, 200);
    std::thread::sleep(Duration::from_millis(700)); // `cold` is past the hot idle wait
    assert_eq!(hot.request(&get("/size/1")).status, 200);
    let sent = Instant::now();
    gw.sigterm();
    let status = gw.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success());
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    assert!(hot.is_closed(Duration::from_secs(1)));
    assert!(cold.is_closed(Duration::from_secs(1)));
}

/// While a request is still in flight, SIGTERM closes idle keep-alive connections at once
/// (they must not pick up new work during the drain), and the in-flight request completes.
#[test]
fn sigterm_closes_idle_connections_while_requests_finish() {
    let b = backend();
    let mut gw = Gateway::start(&config(free_port(), b.addr, "drain_timeout = \"5s\""));
    let mut idle = gw.conn();
    assert_eq!(idle.request(&get("/size/1")).status, 200);
    let mut busy = gw.conn();
    busy.send(&get("/delay/1500"));
    std::thread::sleep(Duration::from_millis(200));
    gw.sigterm();
    let t = Instant::now();
    assert!(
        idle.is_closed(Duration::from_secs(1)),
        "the idle connection was left open during the drain"
    );
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let r = busy.read_response();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(gw
        .wait_exit(Duration::from_secs(5))
        .expect("exits")
        .success());
}

/// `header_timeout` bounds the whole head, counted from its first byte: a client dripping a
/// byte at a time (slowloris) gets its 408 then, however steadily it sends.
#[test]
fn slowly_dripped_head_is_cut_at_header_timeout() {
    let b = backend();
    let port = free_port();
    let cfg = config(port, b.addr, "").replace(
        &format!("address = \"127.0.0.1:{port}\"\n"),
        &format!("address = \"127.0.0.1:{port}\"\nheader_timeout = \"1s\"\n"),
    );
    let gw = Gateway::start(&cfg);
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    let mut answer = Vec::new();
    for byte in head.iter() {
        use std::io::{Read, Write};
        if s.write_all(&[*byte]).is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(n) = s.read(&mut buf) {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    let e = start.elapsed();
    assert!(e < Duration::from_millis(2500), "cut only after {e:?}");
}

/// A second gateway on an address another one already serves refuses to start (the workers'
/// SO_REUSEPORT would otherwise let both bind and split the connections between them).
#[test]
fn second_gateway_on_a_taken_address_refuses_to_start() {
    let b = backend();
    let cfg = config(free_port(), b.addr, "");
    let gw = Gateway::start(&cfg);
    let dir = temp_dir("taken");
    let path = dir.join("second.toml");
    std::fs::write(&path, &cfg).unwrap();
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["run", "-c"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("the second gateway started on a taken address");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(second.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("cannot listen on"), "{err}");
    assert_eq!(gw.conn().request(&get("/size/1")).status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restart right after a stop binds at once (what `systemctl restart` does): the drain takes
/// the listening sockets out of LISTEN before the process exits, so neither the start-up check
/// nor the new workers meet the old ones (on io_uring the kernel closes them only after the
/// rings are torn down).
#[test]
fn restart_right_after_a_stop_binds() {
    let b = backend();
    let cfg = config(free_port(), b.addr, "");
    let mut gw = Gateway::start(&cfg);
    for _ in 0..3 {
        assert_eq!(gw.conn().request(&get("/size/1")).status, 200);
        gw.sigterm();
        assert!(gw
            .wait_exit(Duration::from_secs(5))
            .expect("exits")
            .success());
        gw = Gateway::try_start(&cfg).expect("restart binds at once");
    }
    assert_eq!(gw.conn().request(&get("/size/1")).status, 200);
}
