//! WebSocket soak client: N concurrent connections through ringway to the built-in backend's
//! `/ws` echo, each sending `rate` binary messages of `size` bytes per second for `duration`
//! seconds and checking every echo byte for byte (the payload carries connection id and
//! sequence number, so a lost, reordered or altered message is caught).
//!
//! Run it through `benches/ws/run.sh`, which starts the backend and the gateway. Directly:
//! `ws --run --addr 127.0.0.1:PORT [--conns 10000] [--rate 10] [--size 500] [--duration 60]
//!  [--threads 2] [--ramp 2000] [--pid GATEWAY_PID] [--quick]`.
//! Without `--run` it prints this usage and exits 0 (so `cargo bench` alone does not fail).

#[path = "../util/mod.rs"]
mod util;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Opts {
    addr: SocketAddr,
    conns: usize,
    rate: u64,
    size: usize,
    duration: Duration,
    threads: usize,
    ramp: u64,
}

#[derive(Default)]
struct Stats {
    connected: u64,
    connect_errors: u64,
    handshake_errors: u64,
    io_errors: u64,
    timeouts: u64,
    sent: u64,
    echoed: u64,
    altered: u64,
    clean_closes: u64,
    late_sends: u64,
    rtt_us: Vec<u32>,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.connected += o.connected;
        self.connect_errors += o.connect_errors;
        self.handshake_errors += o.handshake_errors;
        self.io_errors += o.io_errors;
        self.timeouts += o.timeouts;
        self.sent += o.sent;
        self.echoed += o.echoed;
        self.altered += o.altered;
        self.clean_closes += o.clean_closes;
        self.late_sends += o.late_sends;
        self.rtt_us.extend(o.rtt_us);
    }
    fn errors(&self) -> u64 {
        self.connect_errors + self.handshake_errors + self.io_errors + self.timeouts + self.altered
    }
}

fn main() {
    let a = util::Args::parse();
    if !a.has("run") {
        eprintln!("usage: ws --run --addr HOST:PORT [--conns N] [--rate R] [--size B] [--duration S] [--threads T] [--ramp CONNS_PER_S] [--pid PID] [--quick]");
        return;
    }
    let quick = a.has("quick");
    let o = Opts {
        addr: a.addr(),
        conns: a.get("conns", if quick { 100 } else { 10_000 }),
        rate: a.get("rate", 10),
        size: a.get("size", 500).max(16),
        duration: Duration::from_secs(a.get("duration", if quick { 5 } else { 60 })),
        threads: a.get("threads", 2),
        ramp: a.get("ramp", 2000),
    };
    let nofile = util::raise_nofile();
    let pid: Option<u32> = a.string("pid").and_then(|p| p.parse().ok());
    let ramp_time = Duration::from_secs_f64(o.conns as f64 / o.ramp as f64);
    let t0 = Instant::now();
    let start_at = t0 + ramp_time + Duration::from_secs(2);
    println!(
        "ws soak: {} connections to {} ({} threads, nofile {nofile}), {} msg/s x {} B each for {:?}; ramp {:?}",
        o.conns, o.addr, o.threads, o.rate, o.size, o.duration, ramp_time
    );
    let threads: Vec<_> = (0..o.threads)
        .map(|t| {
            let o = o.clone();
            std::thread::spawn(move || run_thread(t, o, t0, start_at))
        })
        .collect();

    // Gateway footprint over the messaging window.
    let mut watch = None;
    if let Some(pid) = pid {
        std::thread::sleep(start_at.saturating_duration_since(Instant::now()));
        let mut w = util::ProcWatch::begin(pid);
        let end = start_at + o.duration;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(500).min(end - Instant::now()));
            w.sample();
        }
        let cpu = w.cpu_since();
        watch = Some((w, cpu));
    }
    let mut total = Stats::default();
    for t in threads {
        total.add(t.join().expect("client thread"));
    }
    total.rtt_us.sort_unstable();
    let lost = total.sent - total.echoed - total.altered;
    println!("connections established: {} / {}", total.connected, o.conns);
    let target = o.conns as u64 * o.rate * o.duration.as_secs();
    println!(
        "messages: target {target} sent {} echoed-identical {} altered {} lost {} (late sends {})",
        total.sent, total.echoed, total.altered, lost, total.late_sends
    );
    println!(
        "errors: connect {} handshake {} io {} timeout {}; clean closes {}",
        total.connect_errors,
        total.handshake_errors,
        total.io_errors,
        total.timeouts,
        total.clean_closes
    );
    let r = &total.rtt_us;
    println!("rtt us: {}", util::percentiles(r));
    println!(
        "throughput: {:.0} msg/s each way",
        total.echoed as f64 / o.duration.as_secs_f64()
    );
    if let Some((w, (user, sys))) = watch {
        let secs = o.duration.as_secs_f64();
        println!(
            "gateway pid {}: RSS {} MiB at start of messaging, peak {} MiB; CPU user {user:.1} s + sys {sys:.1} s over {secs:.0} s = {:.0}% of one core; {:.2} us CPU per message relayed (both directions)",
            w.pid,
            w.rss_start_kib / 1024,
            w.rss_peak_kib / 1024,
            100.0 * (user + sys) / secs,
            1e6 * (user + sys) / (total.echoed.max(1) as f64),
        );
    }
    let ok = total.errors() == 0 && lost == 0 && total.connected == o.conns as u64;
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
}

fn run_thread(t: usize, o: Opts, t0: Instant, start_at: Instant) -> Stats {
    let o = Rc::new(o);
    util::run_tasks(
        t,
        o.conns,
        o.threads,
        move |id, stats: Rc<RefCell<Stats>>| {
            let o = o.clone();
            async move { conn_task(id as u32, &o, t0, start_at, &stats).await }
        },
    )
}

async fn sleep_until(t: Instant) {
    let d = t.saturating_duration_since(Instant::now());
    if !d.is_zero() {
        monoio::time::sleep(d).await;
    }
}

async fn conn_task(id: u32, o: &Opts, t0: Instant, start_at: Instant, stats: &RefCell<Stats>) {
    sleep_until(t0 + Duration::from_secs_f64(id as f64 / o.ramp as f64)).await;
    let mut s = match monoio::time::timeout(IO_TIMEOUT, TcpStream::connect(o.addr)).await {
        Ok(Ok(s)) => s,
        _ => {
            stats.borrow_mut().connect_errors += 1;
            return;
        }
    };
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        o.addr
    );
    let mut buf = Vec::with_capacity(o.size + 64);
    let head_ok = async {
        let (r, _) = s.write_all(req.into_bytes()).await;
        r.ok()?;
        loop {
            buf = read_more(&mut s, std::mem::take(&mut buf)).await.ok()?;
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_string();
                buf.drain(..i + 4);
                return Some(head.starts_with("HTTP/1.1 101") && head.contains(ACCEPT));
            }
        }
    };
    match monoio::time::timeout(IO_TIMEOUT, head_ok).await {
        Ok(Some(true)) => stats.borrow_mut().connected += 1,
        _ => {
            stats.borrow_mut().handshake_errors += 1;
            return;
        }
    }
    let interval = Duration::from_nanos(1_000_000_000 / o.rate.max(1));
    // Spread the connections' send times over one interval.
    let phase = interval.mul_f64(id as f64 / o.conns as f64);
    let end = start_at + o.duration;
    let mut next = start_at + phase;
    let mut seq = 0u32;
    let mut frame = Vec::with_capacity(o.size + 16);
    let mut expect = Vec::with_capacity(o.size);
    sleep_until(next).await;
    // Bounded by the wall clock: a system that cannot keep the rate shows up as fewer
    // messages sent than targeted (and late sends), not as a longer run.
    while next < end && Instant::now() < end {
        payload(id, seq, o.size, &mut expect);
        build_frame(&expect, id ^ seq.rotate_left(7), &mut frame);
        let sent_at = Instant::now();
        let round = async {
            let (r, f) = s.write_all(std::mem::take(&mut frame)).await;
            frame = f;
            r?;
            stats.borrow_mut().sent += 1;
            let need = 4 + o.size;
            while buf.len() < need {
                buf = read_more(&mut s, std::mem::take(&mut buf)).await?;
            }
            Ok::<bool, std::io::Error>(
                buf[0] == 0x82
                    && buf[1] == 126
                    && u16::from_be_bytes([buf[2], buf[3]]) as usize == o.size
                    && buf[4..need] == expect[..],
            )
        };
        match monoio::time::timeout(IO_TIMEOUT, round).await {
            Ok(Ok(true)) => {
                let rtt = sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let mut st = stats.borrow_mut();
                st.echoed += 1;
                st.rtt_us.push(rtt);
            }
            Ok(Ok(false)) => {
                stats.borrow_mut().altered += 1;
                return;
            }
            Ok(Err(_)) => {
                stats.borrow_mut().io_errors += 1;
                return;
            }
            Err(_) => {
                stats.borrow_mut().timeouts += 1;
                return;
            }
        }
        buf.drain(..4 + o.size);
        seq += 1;
        next += interval;
        if Instant::now() > next {
            stats.borrow_mut().late_sends += 1;
        }
        sleep_until(next).await;
    }
    // Close handshake: code 1000, echoed by the server, then the connection ends.
    build_frame(&1000u16.to_be_bytes(), id, &mut frame);
    frame[0] = 0x88;
    let close = async {
        let (r, _) = s.write_all(std::mem::take(&mut frame)).await;
        r?;
        while buf.len() < 4 {
            buf = read_more(&mut s, std::mem::take(&mut buf)).await?;
        }
        Ok::<bool, std::io::Error>(buf[0] == 0x88 && buf[2..4] == 1000u16.to_be_bytes())
    };
    if let Ok(Ok(true)) = monoio::time::timeout(IO_TIMEOUT, close).await {
        stats.borrow_mut().clean_closes += 1;
    }
}

/// Appends one read to `buf`; EOF is an error here.
async fn read_more(s: &mut TcpStream, mut buf: Vec<u8>) -> std::io::Result<Vec<u8>> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    let len = buf.len();
    let (r, slice) = s.read(buf.slice_mut(len..)).await;
    match r? {
        0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(slice.into_inner()),
    }
}

/// The message body: connection id, sequence number, then bytes derived from both.
fn payload(id: u32, seq: u32, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    let mut x = (id as u64) << 32 | seq as u64 | 1;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
}

/// A masked binary client frame carrying `data`.
fn build_frame(data: &[u8], mask_seed: u32, out: &mut Vec<u8>) {
    out.clear();
    out.push(0x82);
    if data.len() < 126 {
        out.push(0x80 | data.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    }
    let mask = mask_seed.wrapping_mul(2_654_435_761).to_be_bytes();
    out.extend_from_slice(&mask);
    out.extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}
