//! SSE soak client: N concurrent event streams from the built-in backend's
//! `/sse?count=C&interval_ms=I&stamp=1` (each event carries the wall-clock time the backend
//! wrote it), directly or through ringway. Checks that every event arrives, in order, and
//! reports per-event delivery latency (arrival time minus the embedded send time); running it
//! once direct and once through the gateway gives the latency ringway adds.
//!
//! Run it through `benches/sse/run.sh`. Directly:
//! `sse --run --addr HOST:PORT [--streams 1000] [--rate 10] [--duration 60] [--threads 1]
//!  [--pid PID] [--label NAME] [--quick]`. Without `--run` it prints usage and exits 0.

#[path = "../util/mod.rs"]
mod util;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

#[derive(Clone)]
struct Opts {
    addr: SocketAddr,
    streams: usize,
    count: u64,
    interval_ms: u64,
    threads: usize,
}

#[derive(Default)]
struct Stats {
    complete: u64,
    failed: u64,
    events: u64,
    out_of_order: u64,
    missing: u64,
    lat_us: Vec<u32>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn main() {
    let a = util::Args::parse();
    if !a.has("run") {
        eprintln!("usage: sse --run --addr HOST:PORT [--streams N] [--rate EV_PER_S] [--duration S] [--threads T] [--pid PID] [--label NAME] [--quick]");
        return;
    }
    let quick = a.has("quick");
    let rate: u64 = a.get("rate", 10);
    let duration: u64 = a.get("duration", if quick { 5 } else { 60 });
    let o = Opts {
        addr: a.addr(),
        streams: a.get("streams", if quick { 100 } else { 1000 }),
        count: rate * duration,
        interval_ms: 1000 / rate.max(1),
        threads: a.get("threads", 1),
    };
    let label = a.string("label").unwrap_or_else(|| o.addr.to_string());
    util::raise_nofile();
    println!(
        "sse soak [{label}]: {} streams x {} events ({} ms apart) from {}",
        o.streams, o.count, o.interval_ms, o.addr
    );
    let started = Instant::now();
    let threads: Vec<_> = (0..o.threads)
        .map(|t| {
            let o = o.clone();
            std::thread::spawn(move || run_thread(t, o))
        })
        .collect();
    let pid: Option<u32> = a.string("pid").and_then(|p| p.parse().ok());
    let watch = pid.map(|pid| {
        let mut w = util::ProcWatch::begin(pid);
        while !threads.iter().all(|t| t.is_finished()) {
            std::thread::sleep(Duration::from_millis(500));
            w.sample();
        }
        let cpu = w.cpu_since();
        (w, cpu)
    });
    let mut total = Stats::default();
    for t in threads {
        let s = t.join().expect("client thread");
        total.complete += s.complete;
        total.failed += s.failed;
        total.events += s.events;
        total.out_of_order += s.out_of_order;
        total.missing += s.missing;
        total.lat_us.extend(s.lat_us);
    }
    let wall = started.elapsed().as_secs_f64();
    total.lat_us.sort_unstable();
    let l = &total.lat_us;
    let expected = o.count * o.streams as u64;
    println!(
        "[{label}] streams complete {} / {} (failed {}); events {} / {} expected; out of order {}; missing {}",
        total.complete, o.streams, total.failed, total.events, expected, total.out_of_order, total.missing
    );
    println!("[{label}] latency us: {}", util::percentiles(l));
    if let Some((w, (user, sys))) = watch {
        println!(
            "[{label}] pid {}: RSS start {} MiB peak {} MiB; CPU user {user:.2} s + sys {sys:.2} s over {wall:.0} s ({:.1}% of one core)",
            w.pid,
            w.rss_start_kib / 1024,
            w.rss_peak_kib / 1024,
            100.0 * (user + sys) / wall
        );
    }
    let ok = total.failed == 0
        && total.out_of_order == 0
        && total.missing == 0
        && total.events == expected;
    println!("[{label}] result: {}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
}

fn run_thread(t: usize, o: Opts) -> Stats {
    let o = Rc::new(o);
    util::run_tasks(
        t,
        o.streams,
        o.threads,
        move |id, stats: Rc<RefCell<Stats>>| {
            let o = o.clone();
            async move {
                // Spread the streams' start over one interval (and the connects over time).
                let delay = o.interval_ms * id as u64 / o.streams as u64;
                monoio::time::sleep(Duration::from_millis(delay)).await;
                let ok = stream(&o, &stats).await;
                let mut s = stats.borrow_mut();
                if ok {
                    s.complete += 1;
                } else {
                    s.failed += 1;
                }
            }
        },
    )
}

/// One stream to its end; true if every event arrived in order.
async fn stream(o: &Opts, stats: &RefCell<Stats>) -> bool {
    let Ok(mut s) = TcpStream::connect(o.addr).await else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET /sse?count={}&interval_ms={}&stamp=1 HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        o.count, o.interval_ms, o.addr
    );
    let (r, _) = s.write_all(req.into_bytes()).await;
    if r.is_err() {
        return false;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut pos = 0;
    let mut head_done = false;
    let (mut chunked, mut data) = (false, Vec::new());
    let mut next_id = 1u64;
    let mut ok = true;
    // Each read has a generous deadline: a stalled stream is a failure, not a hang.
    let read_timeout = Duration::from_millis(o.interval_ms * 20 + 5000);
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let len = buf.len();
        let read = s.read(std::mem::take(&mut buf).slice_mut(len..));
        let Ok((r, slice)) = monoio::time::timeout(read_timeout, read).await else {
            return false;
        };
        buf = slice.into_inner();
        match r {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return false,
        }
        let arrived = now_us();
        if !head_done {
            let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") || !head.contains("text/event-stream") {
                return false;
            }
            // A stream the upstream ends by closing reaches HTTP/1.1 clients chunked (from
            // ringway and nginx alike).
            chunked = head.contains("transfer-encoding: chunked");
            head_done = true;
            buf.drain(..i + 4);
        }
        let mut ended = false;
        if chunked {
            match dechunk(&mut buf, &mut data) {
                Some(end) => ended = end,
                None => return false,
            }
        } else {
            data.extend_from_slice(&buf);
            buf.clear();
        }
        while let Some(i) = data[pos..].windows(2).position(|w| w == b"\n\n") {
            let ev = &data[pos..pos + i];
            pos += i + 2;
            let text = String::from_utf8_lossy(ev);
            // "id: K\ndata: event K t=US"
            let id: Option<u64> = text
                .strip_prefix("id: ")
                .and_then(|r| r.split('\n').next())
                .and_then(|k| k.parse().ok());
            let sent: Option<u64> = text.rsplit("t=").next().and_then(|t| t.parse().ok());
            let mut st = stats.borrow_mut();
            match (id, sent) {
                (Some(id), Some(sent)) => {
                    st.events += 1;
                    if id != next_id {
                        st.out_of_order += 1;
                        ok = false;
                    }
                    next_id = id + 1;
                    st.lat_us
                        .push(arrived.saturating_sub(sent).min(u32::MAX as u64) as u32);
                }
                _ => ok = false,
            }
        }
        if pos == data.len() {
            data.clear();
            pos = 0;
        }
        if ended {
            break;
        }
    }
    let got = next_id - 1;
    if got < o.count {
        stats.borrow_mut().missing += o.count - got;
        ok = false;
    }
    ok && head_done
}

/// Moves the data of the complete chunks at the front of `raw` to `data`, leaving a partial
/// chunk in `raw`. `Some(true)` once the last chunk came, `None` on a malformed size line.
fn dechunk(raw: &mut Vec<u8>, data: &mut Vec<u8>) -> Option<bool> {
    let mut at = 0;
    while let Some(eol) = raw[at..].windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&raw[at..at + eol]);
        let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
        else {
            return None;
        };
        let start = at + eol + 2;
        if size == 0 {
            return Some(true);
        }
        if raw.len() < start + size + 2 {
            break;
        }
        data.extend_from_slice(&raw[start..start + size]);
        at = start + size + 2;
    }
    raw.drain(..at);
    Some(false)
}
