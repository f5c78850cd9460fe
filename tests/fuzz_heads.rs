//! Seeded, bounded fuzzing of both sides of the gateway: mutated requests from clients and
//! mutated responses from a scripted upstream (bytes inserted, deleted and flipped in valid
//! messages: heads, chunked bodies, 1xx, 101, event streams). Whatever arrives, the gateway
//! must answer or close without a panic or a hang, and keep serving well-formed traffic.
//! (The upstream fuzzer found two panics: a status line without a reason phrase, and an
//! abandoned upload taking the request head from the access log.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config_with, free_port, get, Gateway, RawUpstream};

/// xorshift64*: a fixed seed gives the same cases on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a [u8]]) -> &'a [u8] {
        xs[self.below(xs.len())]
    }
}

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"\0",
    b"\x7f",
    b"\xff",
    b"0",
    b"ffffffffffffffff",
    b"-1",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"Host: x\r\n",
];

/// One to four edits of `msg`: delete a byte, insert a token, overwrite a byte.
fn mutate(rng: &mut Rng, msg: &[u8]) -> Vec<u8> {
    let mut b = msg.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(3) {
            0 if !b.is_empty() => {
                b.remove(at.min(b.len() - 1));
            }
            1 => {
                let t = rng.pick(TOKENS);
                b.splice(at..at, t.iter().copied());
            }
            _ if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] = rng.next() as u8;
            }
            _ => {}
        }
    }
    b
}

const REQUESTS: &[&[u8]] = &[
    b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET http://a:1/x?y=1 HTTP/1.1\r\nHost: b\r\nConnection: close, X-F\r\nX-F: 1\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"HEAD /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
];

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;e\r\nhello\r\n0\r\nX: y\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nclose-delimited",
    b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n",
];

/// Sends `raw` and reads until the gateway closes or goes quiet; never longer than `limit`.
fn exchange(addr: std::net::SocketAddr, raw: &[u8], half_close: bool, limit: Duration) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        panic!("gateway stopped accepting");
    };
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let _ = s.write_all(raw);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let started = Instant::now();
    let mut buf = [0u8; 65536];
    while started.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn assert_serving(gw: &Gateway) {
    // The upstream's next answer is whichever mutated response is due, so any final status
    // will do: what counts is that the gateway still answers.
    let r = gw.conn().request(&get("/ok"));
    assert!((200..600).contains(&r.status), "still serving: {r:?}");
    let log = gw.log();
    assert!(!log.contains("panicked"), "a panic:\n{log}");
}

#[test]
fn mutated_requests_and_responses_never_panic_or_hang() {
    // The upstream answers each request with a mutated response chosen by a shared counter,
    // then sometimes closes; a fixed seed makes the sequence repeat.
    let turn = Arc::new(AtomicU64::new(0));
    let t = turn.clone();
    let up = RawUpstream::start(move |mut c| {
        while c.read_head().is_some() {
            let n = t.fetch_add(1, Ordering::SeqCst);
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (n + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
            let good = n.is_multiple_of(4);
            let resp = rng.pick(RESPONSES);
            let resp = if good {
                resp.to_vec()
            } else {
                mutate(&mut rng, resp)
            };
            c.write(&resp);
            if rng.below(3) == 0 {
                return;
            }
        }
    });
    let log = common::temp_dir("fuzz").join("access.log");
    let top = format!("[access_log]\nenabled = true\npath = \"{}\"", log.display());
    let cfg = config_with(
        free_port(),
        up.addr,
        &top,
        "",
        "response_timeout = \"500ms\"",
    )
    .replace(
        "[[listeners]]\naddress",
        "[[listeners]]\nheader_timeout = \"500ms\"\naddress",
    );
    let gw = Gateway::start(&cfg);
    let mut rng = Rng(42);
    let started = Instant::now();
    let mut cases = 0u32;
    // Bounded in count and time.
    while cases < 400 && started.elapsed() < Duration::from_secs(40) {
        let mut raw = Vec::new();
        for _ in 0..1 + rng.below(2) {
            let req = rng.pick(REQUESTS);
            if rng.below(3) == 0 {
                raw.extend_from_slice(req);
            } else {
                raw.extend_from_slice(&mutate(&mut rng, req));
            }
        }
        exchange(gw.addr, &raw, rng.below(2) == 0, Duration::from_secs(3));
        cases += 1;
        if cases.is_multiple_of(100) {
            assert_serving(&gw);
        }
    }
    assert!(cases >= 100, "ran {cases} cases");
    assert_serving(&gw);
}
