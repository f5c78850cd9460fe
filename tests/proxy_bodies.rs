//! Bodies through the real gateway: fixed and chunked, both directions, sizes around buffer
//! edges, each followed by a pipelined request on the same connection; upstream keep-alive
//! reuse; 1xx forwarding; bodiless responses; HTTP/1.0; forwarding headers.

mod common;

use std::time::Duration;

use common::{backend, chunked, gateway_for, get, send_in_thread, Conn, RawUpstream};
use ringway::backend::pattern;

const SIZES: &[usize] = &[0, 1, 4095, 4096, 65536, (1 << 20) + 1, 16 << 20];
/// Echo sizes: an upstream that streams its answer while the body still arrives needs a
/// full-duplex relay above the socket buffers' capacity (see `echo_16mib_full_duplex`).
const ECHO_SIZES: &[usize] = &[0, 1, 4095, 4096, 65536, (1 << 20) + 1];

/// After a body, a second pipelined request on the same connection must still be answered.
fn check_follow_up(c: &mut Conn) {
    let r = c.read_response();
    assert_eq!(r.status, 200, "pipelined follow-up");
    assert_eq!(r.body, pattern(7));
}

#[test]
fn get_fixed_and_chunked_bodies_with_pipelining() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    for &n in SIZES {
        for kind in ["size", "chunked"] {
            let mut req = get(&format!("/{kind}/{n}"));
            req.extend_from_slice(&get("/size/7"));
            c.send(&req);
            let r = c.read_response();
            assert_eq!(r.status, 200, "/{kind}/{n}");
            assert_eq!(r.body.len(), n, "/{kind}/{n} length");
            assert!(r.body == pattern(n), "/{kind}/{n} bytes differ");
            if kind == "size" {
                assert_eq!(r.header("content-length"), Some(n.to_string().as_str()));
            }
            check_follow_up(&mut c);
        }
    }
    assert_eq!(
        b.accepted(),
        1,
        "one upstream connection serves every request"
    );
}

fn post_echo(c: &mut Conn, body: &[u8], as_chunked: bool) {
    let mut req = if as_chunked {
        let mut r =
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        r.extend_from_slice(&chunked(body, 40_000));
        r
    } else {
        let mut r = format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    req.extend_from_slice(&get("/size/7"));
    let writer = send_in_thread(&c.stream, req);
    let r = c.read_response();
    writer.join().unwrap();
    assert_eq!(r.status, 200, "echo {} bytes", body.len());
    assert_eq!(r.body.len(), body.len(), "echo length");
    assert!(r.body == body, "echo of {} bytes differs", body.len());
    check_follow_up(c);
}

#[test]
fn post_fixed_bodies_echo_with_pipelining() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    for &n in ECHO_SIZES {
        post_echo(&mut c, &pattern(n), false);
    }
}

#[test]
fn post_chunked_bodies_echo_with_pipelining() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    for &n in ECHO_SIZES {
        post_echo(&mut c, &pattern(n), true);
    }
}

/// An upstream that streams its answer while the request body still arrives (echo) needs the
/// gateway to relay both directions at once. 16 MiB chunked hangs; 64 MiB fixed hangs too (16 MiB
/// fixed only passes because loopback socket buffers happen to absorb it).
#[test]
fn echo_16mib_full_duplex() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    post_echo(&mut c, &pattern(16 << 20), true);
    post_echo(&mut c, &pattern(64 << 20), false);
}

/// An upstream that reads each whole request body, then answers with its length and whether
/// it matched `pattern`; proves uploads of every size arrive byte for byte (CL and chunked).
fn upload_checker() -> RawUpstream {
    RawUpstream::start(|mut c| {
        while let Some(head) = c.read_head() {
            let lower = head.to_ascii_lowercase();
            let body = if lower.contains("transfer-encoding: chunked") {
                c.read_chunked_body()
            } else {
                let n = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                c.read_body(n)
            };
            let Some(body) = body else { return };
            let ok = body == pattern(body.len());
            let text = format!("{} {ok}", body.len());
            c.write(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                )
                .as_bytes(),
            );
        }
    })
}

#[test]
fn uploads_of_every_size_arrive_intact() {
    let up = upload_checker();
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    for &n in SIZES {
        for as_chunked in [false, true] {
            let body = pattern(n);
            let mut req = if as_chunked {
                let mut r =
                    b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                r.extend_from_slice(&chunked(&body, 65_000));
                r
            } else {
                let mut r = format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\r\n")
                    .into_bytes();
                r.extend_from_slice(&body);
                r
            };
            req.extend_from_slice(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
            let writer = send_in_thread(&c.stream, req);
            let r = c.read_response();
            writer.join().unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(
                r.body_str(),
                format!("{n} true"),
                "upload of {n} (chunked {as_chunked})"
            );
            let r = c.read_response();
            assert_eq!(r.body_str(), "3 true", "pipelined follow-up");
        }
    }
    assert_eq!(up.accepted(), 1);
}

#[test]
fn upstream_connections_are_reused() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    for _ in 0..3 {
        let mut c = gw.conn();
        for _ in 0..10 {
            let r = c.request(&get("/size/100"));
            assert_eq!(r.status, 200);
            assert_eq!(r.body, pattern(100));
        }
    }
    assert_eq!(b.requests(), 30);
    assert_eq!(
        b.accepted(),
        1,
        "sequential requests share one upstream connection"
    );
}

/// A raw upstream answering each request with `parts`, written one by one.
fn upstream_writing(parts: &'static [&'static [u8]]) -> RawUpstream {
    RawUpstream::start(move |mut c| {
        while c.read_head().is_some() {
            for p in parts {
                c.write(p);
            }
        }
    })
}

#[test]
fn interim_responses_are_forwarded_in_order() {
    let up = upstream_writing(&[
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ]);
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    for _ in 0..2 {
        c.send(&get("/"));
        let statuses: Vec<u16> = (0..4).map(|_| c.read_response().status).collect();
        assert_eq!(statuses[..3], [100, 103, 103]);
        assert_eq!(statuses[3], 200);
    }
    // The Link field of an early hint reaches the client.
    c.send(&get("/"));
    assert_eq!(c.read_response().status, 100);
    let hint = c.read_response();
    assert_eq!(hint.status, 103);
    assert_eq!(hint.header("link"), Some("</a.css>; rel=preload"));
    assert_eq!(c.read_response().status, 103);
    let last = c.read_response();
    assert_eq!((last.status, last.body.as_slice()), (200, &b"hello"[..]));
}

/// Status lines without a reason phrase (allowed: `HTTP/1.1 200 ` and, leniently, no space
/// at all) on interim and final responses are relayed with an empty reason; they once made
/// the reason's position in the buffer garbage and the relay panic.
#[test]
fn status_lines_without_reason_are_relayed() {
    let up = upstream_writing(&[
        b"HTTP/1.1 100\r\n\r\n",
        b"HTTP/1.1 103 \r\nLink: </a.css>\r\n\r\n",
        b"HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello",
    ]);
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    for _ in 0..2 {
        c.send(&get("/"));
        assert_eq!(c.read_response().status, 100);
        assert_eq!(c.read_response().status, 103);
        let last = c.read_response();
        assert_eq!((last.status, last.body.as_slice()), (200, &b"hello"[..]));
    }
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
}

/// A Content-Length an upstream put on a 1xx or 204 is not passed on: RFC 9110 §8.6 forbids
/// it there (a 304 and a HEAD answer keep theirs: they describe the body they would have had).
#[test]
fn no_content_length_on_1xx_and_204() {
    let up = upstream_writing(&[
        b"HTTP/1.1 100 Continue\r\nContent-Length: 4\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    ]);
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    for _ in 0..2 {
        c.send(&get("/"));
        let interim = c.read_response_for_head();
        assert_eq!(interim.status, 100);
        assert_eq!(interim.header("content-length"), None, "{interim:?}");
        let last = c.read_response_for_head();
        assert_eq!(last.status, 204);
        assert_eq!(last.header("content-length"), None, "{last:?}");
    }
    let up = upstream_writing(&[b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"]);
    let gw = gateway_for(up.addr, "");
    let r = gw.conn().request(&get("/"));
    assert_eq!((r.status, r.header("content-length")), (304, Some("5")));
}

/// Upgrade on a response other than 101 is an offer for the upstream's own hop (RFC 9110
/// §7.8, e.g. Apache's `Upgrade: h2,h2c` on ordinary responses): it is not passed on, and
/// neither is the Connection that names it.
#[test]
fn upgrade_offer_on_a_response_is_not_forwarded() {
    let up = upstream_writing(&[
        b"HTTP/1.1 200 OK\r\nUpgrade: h2,h2c\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nok",
    ]);
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    let r = c.request(&get("/"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(r.header("upgrade"), None, "{r:?}");
    assert_eq!(r.header("connection"), None, "{r:?}");
    assert_eq!(c.request(&get("/")).status, 200, "kept alive");
}

/// A response forwarded without a Date gets one (RFC 9110 §6.6.1); one that has a Date keeps
/// it, once. Via names the version of the response as received.
#[test]
fn date_added_when_missing_and_via_names_the_received_version() {
    let up = upstream_writing(&[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]);
    let gw = gateway_for(up.addr, "");
    let r = gw.conn().request(&get("/"));
    let date = r.header("date").expect("a Date was added");
    assert!(date.ends_with(" GMT"), "{date}");
    assert_eq!(r.header("via"), Some("1.1 ringway"));
    let up = upstream_writing(&[
        b"HTTP/1.0 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nok",
    ]);
    let gw = gateway_for(up.addr, "");
    let r = gw.conn().request(&get("/"));
    assert_eq!(r.headers_named("date"), ["Mon, 01 Jan 2024 00:00:00 GMT"]);
    assert_eq!(r.header("via"), Some("1.0 ringway"));
}

/// An HTTP/1.0 request cannot upgrade (RFC 9110 §7.8): its Upgrade is ignored, not passed on.
#[test]
fn http10_upgrade_is_ignored() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let r = gw.conn().request(
        b"GET /headers HTTP/1.0\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = r.body_str().to_ascii_lowercase();
    assert!(!seen.contains("upgrade"), "{seen}");
}

#[test]
fn expect_100_continue_with_body() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    let first = c.read_response();
    assert_eq!(first.status, 100, "the client is told to go on");
    c.send(b"hello world");
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));
    let r = c.request(&get("/size/3"));
    assert_eq!(r.body, pattern(3));
}

#[test]
fn head_204_304_have_no_body_and_pipelining_continues() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    let mut req = b"HEAD /size/1000 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    req.extend_from_slice(&get("/status/204"));
    req.extend_from_slice(&get("/status/304"));
    req.extend_from_slice(&get("/size/7"));
    c.send(&req);
    let head = c.read_response_for_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1000"));
    let r204 = c.read_response();
    assert_eq!(r204.status, 204);
    assert_eq!(r204.header("content-length"), None);
    let r304 = c.read_response();
    assert_eq!(r304.status, 304);
    check_follow_up(&mut c);
    assert!(
        c.buffered().is_empty(),
        "no stray body bytes: {:?}",
        c.buffered()
    );
}

#[test]
fn http10_keep_alive_and_close() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    // 1.0 with keep-alive: stays open.
    let mut c = gw.conn();
    for _ in 0..2 {
        let r = c.request(b"GET /size/10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, pattern(10));
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // A chunked upstream body reaches a 1.0 client as a close-delimited body.
    c.send(b"GET /chunked/5000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.body, pattern(5000));
    // Plain 1.0: closed after the response.
    let mut c = gw.conn();
    let r = c.request(b"GET /size/10 HTTP/1.0\r\n\r\n");
    assert_eq!(r.body, pattern(10));
    assert!(
        c.is_closed(Duration::from_secs(2)),
        "HTTP/1.0 without keep-alive closes"
    );
}

#[test]
fn connection_close_is_honoured() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    let mut req = b"GET /size/10 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
    req.extend_from_slice(&get("/size/7"));
    c.send(&req);
    let r = c.read_response();
    assert_eq!(r.body, pattern(10));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed(Duration::from_secs(2)));
    assert!(
        c.buffered().is_empty(),
        "request after close was not answered"
    );
}

#[test]
fn forwarding_headers_added_and_hop_by_hop_removed() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    let r = c.request(
        b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, x-secret\r\nX-Secret: 1\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = r.body_str().to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http\r\n"), "{seen}");
    assert!(seen.contains("via: 1.1 ringway\r\n"), "{seen}");
    assert!(seen.contains("x-kept: yes\r\n"), "{seen}");
    for gone in [
        "x-secret:",
        "keep-alive:",
        "\r\nte:",
        "proxy-connection:",
        "connection:",
    ] {
        assert!(!seen.contains(gone), "{gone} forwarded: {seen}");
    }
    // An existing X-Forwarded-For is appended to; a client's X-Forwarded-Proto is replaced.
    let r = c.request(
        b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n",
    );
    let seen = r.body_str().to_ascii_lowercase();
    assert!(
        seen.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n"),
        "{seen}"
    );
    assert!(!seen.contains("https"), "{seen}");
    assert_eq!(seen.matches("x-forwarded-proto").count(), 1, "{seen}");
    // Several X-Forwarded-For lines become one list, the client last: appending to the last
    // line only would leave an upstream reading the first one with a client-chosen address.
    let r = c.request(
        b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 1.2.3.4\r\nX-Other: x\r\nx-forwarded-for: 5.6.7.8\r\n\r\n",
    );
    let seen = r.body_str().to_ascii_lowercase();
    assert_eq!(seen.matches("x-forwarded-for").count(), 1, "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 1.2.3.4, 5.6.7.8, 127.0.0.1\r\n"),
        "{seen}"
    );
    assert!(seen.contains("x-other: x\r\n"), "{seen}");
    // A bodiless POST keeps its `Content-Length: 0` (RFC 9110 §8.6); a GET without one gets none.
    let r = c.request(b"POST /headers HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let seen = r.body_str().to_ascii_lowercase();
    assert!(seen.contains("content-length: 0\r\n"), "{seen}");
    let r = c.request(&get("/headers"));
    assert!(
        !r.body_str().to_ascii_lowercase().contains("content-length"),
        "{r:?}"
    );
    // An empty one is not turned into a list with an empty member.
    let r = c.request(b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For:\r\n\r\n");
    let seen = r.body_str().to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
    // An empty Upgrade names no protocol: no upgrade is asked of the upstream.
    let r =
        c.request(b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade:\r\n\r\n");
    assert_eq!(r.status, 200);
    let seen = r.body_str().to_ascii_lowercase();
    assert!(!seen.contains("upgrade"), "{seen}");
}

/// RFC 9112 §3.2.2: an absolute-form target is accepted; its authority replaces Host upstream,
/// and its path is what is routed and forwarded.
#[test]
fn absolute_form_target_is_accepted() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    let r = c.request(b"GET http://api.example:8080/headers?x=1 HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(r.status, 200);
    let seen = r.body_str().to_ascii_lowercase();
    assert!(seen.starts_with("get /headers?x=1 http/1.1\r\n"), "{seen}");
    assert!(seen.contains("host: api.example:8080\r\n"), "{seen}");
    assert!(!seen.contains("host: other"), "{seen}");
    let r = c.request(b"GET http://api.example HTTP/1.1\r\nHost: api.example\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 50, "the empty path is forwarded as /");
    // An empty path with a query is `/` too (RFC 9110 §4.2.3): routed, and forwarded as `/?x=1`.
    let r = c.request(b"GET http://api.example?x=1 HTTP/1.1\r\nHost: api.example\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, 50), "{r:?}");
}

/// Chunk extensions and trailers are dropped, the body is intact and the upstream reused.
#[test]
fn chunk_extensions_and_trailers_end_cleanly() {
    let up = RawUpstream::answering_each(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    );
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    for _ in 0..3 {
        let r = c.request(&get("/"));
        assert_eq!(r.body, b"abc");
    }
    assert_eq!(up.accepted(), 1);
}

/// HTTP/1.0 clients do not understand 1xx: they get only the final response.
#[test]
fn interim_responses_are_not_sent_to_http10_clients() {
    let up = RawUpstream::answering_each(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
}

/// HEAD of a chunked resource: no body, not even a last-chunk, and pipelining continues.
#[test]
fn head_of_a_chunked_resource_has_no_body() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    let mut req = b"HEAD /chunked/100 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    req.extend_from_slice(&get("/size/7"));
    c.send(&req);
    let h = c.read_response_for_head();
    assert_eq!(h.status, 200);
    let r = c.read_response();
    assert_eq!(r.body, pattern(7));
}

/// Hop-by-hop fields of the response (and those it lists in Connection) are not forwarded.
#[test]
fn response_hop_by_hop_fields_removed() {
    let up = RawUpstream::answering_each(b"HTTP/1.1 200 OK\r\nConnection: x-foo\r\nX-Foo: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Bar: 2\r\nContent-Length: 2\r\n\r\nok");
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    let r = c.request(&get("/"));
    assert_eq!(r.header("x-bar"), Some("2"));
    for h in ["x-foo", "keep-alive", "proxy-connection"] {
        assert_eq!(r.header(h), None, "{h}: {r:?}");
    }
}

/// Writes `bytes` one small piece at a time (forcing every parser across read boundaries).
fn trickle(stream: &mut std::net::TcpStream, bytes: &[u8], piece: usize) {
    stream.set_nodelay(true).unwrap();
    for p in bytes.chunks(piece) {
        if std::io::Write::write_all(stream, p).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn trickled_request_heads_and_bodies() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    let body = pattern(300);
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(b"7;ext=1\r\n");
    req.extend_from_slice(&body[..7]);
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(&chunked(&body[7..], 50)[..]);
    let mut s = c.stream.try_clone().unwrap();
    trickle(&mut s, &req, 1);
    let r = c.read_response();
    assert_eq!(r.body, body, "chunked body written a byte at a time");
    let mut req = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    trickle(&mut s, &req, 3);
    let r = c.read_response();
    assert_eq!(r.body, body, "fixed body written three bytes at a time");
}

#[test]
fn trickled_upstream_responses() {
    let up = RawUpstream::start(|mut c| {
        let mut n = 0;
        while c.read_head().is_some() {
            let resp: &[u8] = if n % 2 == 0 {
                b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 11\r\n\r\nhello world"
            } else {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n"
            };
            n += 1;
            trickle(&mut c.stream, resp, 1);
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    for _ in 0..4 {
        let r = c.request(&get("/"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));
    }
    assert_eq!(
        up.accepted(),
        1,
        "trickled responses still end cleanly and reuse"
    );
}

#[test]
fn not_modified_with_content_length_has_no_body() {
    let up = RawUpstream::start(|mut c| {
        while c.read_head().is_some() {
            c.write(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 1234\r\n\r\n");
            if c.read_head().is_some() {
                c.write(b"HTTP/1.1 204 No Content\r\nX-N: 1\r\n\r\n");
            }
            if c.read_head().is_some() {
                c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        }
    });
    let gw = gateway_for(up.addr, "");
    let mut c = gw.conn();
    let mut req = get("/a");
    req.extend_from_slice(&get("/b"));
    req.extend_from_slice(&get("/c"));
    c.send(&req);
    let r = c.read_response();
    assert_eq!(r.status, 304);
    assert_eq!(
        r.header("content-length"),
        Some("1234"),
        "304 keeps the length it describes"
    );
    assert_eq!(r.header("etag"), Some("\"x\""));
    assert_eq!(c.read_response().status, 204);
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(up.accepted(), 1);
}

#[test]
fn deep_pipeline_is_answered_in_order() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    let mut req = Vec::new();
    for i in 0..200 {
        match i % 4 {
            0 => req.extend_from_slice(&get(&format!("/size/{i}"))),
            1 => req.extend_from_slice(&get(&format!("/chunked/{i}"))),
            2 => req.extend_from_slice(
                format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {i}\r\n\r\n").as_bytes(),
            ),
            _ => req.extend_from_slice(b"HEAD /size/9 HTTP/1.1\r\nHost: t\r\n\r\n"),
        }
        if i % 4 == 2 {
            req.extend_from_slice(&pattern(i));
        }
    }
    let writer = send_in_thread(&c.stream, req);
    for i in 0..200 {
        let r = if i % 4 == 3 {
            c.read_response_for_head()
        } else {
            c.read_response()
        };
        assert_eq!(r.status, 200, "request {i}");
        if i % 4 != 3 {
            assert_eq!(r.body, pattern(i), "request {i}");
        }
    }
    writer.join().unwrap();
    assert_eq!(b.accepted(), 1);
}

#[test]
fn request_then_half_close_is_still_answered() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    let mut req = get("/size/70000");
    req.extend_from_slice(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    c.send(&req);
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.read_response().body, pattern(70000));
    assert_eq!(c.read_response().body, b"abc");
    assert!(
        c.is_closed(Duration::from_secs(2)),
        "closed after the last answer"
    );
}

/// Listing a field in Connection removes that field, but can neither strip the gateway's own
/// X-Forwarded-For nor the Host the upstream needs; every Connection field counts.
#[test]
fn connection_listed_fields_cannot_remove_forwarding_or_host() {
    let b = backend();
    let gw = gateway_for(b.addr, "");
    let mut c = gw.conn();
    let r = c.request(
        b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: x-forwarded-for, host, via\r\n\
          X-Forwarded-For: 6.6.6.6\r\n\r\n",
    );
    let seen = r.body_str().to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
    assert!(
        !seen.contains("6.6.6.6"),
        "the listed field itself is dropped: {seen}"
    );
    assert!(seen.contains("\r\nhost: t\r\n"), "{seen}");
    assert!(seen.contains("via: 1.1 ringway\r\n"), "{seen}");
    let r = c.request(
        b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\nConnection: x-secret\r\n\
          X-Secret: 1\r\n\r\n",
    );
    let seen = r.body_str().to_ascii_lowercase();
    assert!(
        !seen.contains("x-secret"),
        "listed in a second Connection field: {seen}"
    );
}
