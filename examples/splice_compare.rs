//! Compares two ways to splice a length-bounded body socket → pipe → socket on an io_uring
//! runtime with ringway's ring flags:
//! - `direct`: ringway's relay (`relay::splice`): splice(2) with SPLICE_F_NONBLOCK on the worker
//!   thread, waiting with poll ops on EAGAIN;
//! - `direct64k`: the same with a 64 KiB pipe (what monoio's `Pipe` is stuck with);
//! - `direct16k`: a 16 KiB pipe, i.e. at most 16 KiB per splice pair, as splicing the data of
//!   16 KiB chunks one by one would be;
//! - `copy16k` / `copy64k`: read into a 16 / 64 KiB buffer and write it, as the copy relay does;
//! - `uring`: monoio's io_uring splice ops (`SpliceSource`/`SpliceDestination`, monoio `Pipe`),
//!   which the kernel punts to io-wq worker threads.
//!
//! A source thread writes N bytes into one socket, a sink thread reads them from another; the
//! runtime thread relays. CPU is the whole process's (io-wq threads included, even after they
//! exit) minus the source and sink threads' own.
//!
//! Run: cargo run --release --example splice_compare -- [MiB per run (256)] [runs (3)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use monoio::io::splice::{SpliceDestination, SpliceSource};
use ringway::relay::pipes::PipePool;
use ringway::relay::splice::{relay, Deadlines};
use ringway::server::runtime::{builder, RingFlags};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let mib = args.first().copied().unwrap_or(256);
    let runs = args.get(1).copied().unwrap_or(3);
    println!("relaying {mib} MiB per run, {runs} runs each");
    for _ in 0..runs {
        for method in [
            "direct",
            "direct64k",
            "uring",
            "direct16k",
            "copy16k",
            "copy64k",
        ] {
            let (secs, cpu) = run(method, mib << 20);
            println!(
                "{method:9}  {:8.1} MiB/s  relay CPU {:.3} ms/MiB (user {:.3} sys {:.3})  io-wq threads seen: {}",
                mib as f64 / secs,
                (cpu.0 + cpu.1) * 1e3 / mib as f64,
                cpu.0 * 1e3 / mib as f64,
                cpu.1 * 1e3 / mib as f64,
                cpu.2
            );
        }
    }
}

/// (user, sys) seconds of this thread or of the whole process.
fn rusage(who: libc::c_int) -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct we pass; no other memory is touched.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(who, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime), t(ru.ru_stime))
}

/// A connected loopback pair: (the end a helper thread uses, the end the relay uses).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

fn run(method: &str, len: u64) -> (f64, (f64, f64, usize)) {
    let (mut src_end, relay_in) = pair();
    let (mut sink_end, relay_out) = pair();
    let source = thread::spawn(move || {
        let buf = vec![7u8; 256 * 1024];
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(buf.len());
            src_end.write_all(&buf[..n]).unwrap();
            left -= n;
        }
        rusage(libc::RUSAGE_THREAD)
    });
    let sink = thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        while got < len {
            let n = sink_end.read(&mut buf).unwrap();
            assert!(n > 0, "sink: early EOF");
            got += n as u64;
        }
        rusage(libc::RUSAGE_THREAD)
    });
    let before = rusage(libc::RUSAGE_SELF);
    let started = Instant::now();
    let method = method.to_string();
    let wq = thread::spawn(move || {
        let flags = RingFlags {
            coop_taskrun: true,
            single_issuer: true,
            defer_taskrun: true,
        };
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .uring_builder(builder(flags))
            .enable_timer()
            .build()
            .expect("io_uring runtime");
        rt.block_on(async move {
            // io_uring splice on an O_NONBLOCK socket completes with EAGAIN instead of waiting,
            // so monoio's ops need blocking sockets (which is what sends them to io-wq).
            let nonblocking = method != "uring";
            let size = match method.as_str() {
                "direct" => 1 << 20,
                "direct16k" => 16 << 10,
                _ => 64 << 10,
            };
            relay_in.set_nonblocking(nonblocking).unwrap();
            relay_out.set_nonblocking(nonblocking).unwrap();
            let mut a = monoio::net::TcpStream::from_std(relay_in).unwrap();
            let mut b = monoio::net::TcpStream::from_std(relay_out).unwrap();
            if method.starts_with("copy") {
                let size = if method == "copy16k" {
                    16 << 10
                } else {
                    64 << 10
                };
                copy_relay(&mut a, &mut b, len, size).await;
            } else if method != "uring" {
                let pool = PipePool::new(size);
                let t = Deadlines {
                    read: Duration::from_secs(10),
                    write: Duration::from_secs(10),
                    watch_dest: false,
                };
                relay(&pool, &a, &b, len, t).await.result.expect("relay");
            } else {
                uring_relay(&mut a, &mut b, len).await;
            }
            count_io_wq()
        })
    })
    .join()
    .unwrap();
    let s = source.join().unwrap();
    let k = sink.join().unwrap();
    let secs = started.elapsed().as_secs_f64();
    let after = rusage(libc::RUSAGE_SELF);
    let user = after.0 - before.0 - s.0 - k.0;
    let sys = after.1 - before.1 - s.1 - k.1;
    (secs, (user, sys, wq))
}

/// The copy relay's pattern: read into a user-space buffer, write it out.
async fn copy_relay(
    a: &mut monoio::net::TcpStream,
    b: &mut monoio::net::TcpStream,
    len: u64,
    size: usize,
) {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    let mut buf = Vec::with_capacity(size);
    let mut left = len;
    while left > 0 {
        let (r, got) = a.read(buf).await;
        let n = r.expect("read");
        assert!(n > 0, "early EOF");
        let (r, back) = b.write_all(got).await;
        r.expect("write");
        buf = back;
        left -= n as u64;
    }
}

/// monoio's splice ops with its own (unsizable, 64 KiB) pipe.
async fn uring_relay(a: &mut monoio::net::TcpStream, b: &mut monoio::net::TcpStream, len: u64) {
    let (mut r, mut w) = monoio::net::unix::new_pipe().expect("pipe");
    let mut left = len;
    while left > 0 {
        let n = a
            .splice_to_pipe(&mut w, left.min(64 * 1024) as u32)
            .await
            .expect("splice in");
        assert!(n > 0, "early EOF");
        let mut m = n;
        while m > 0 {
            m -= b.splice_from_pipe(&mut r, m).await.expect("splice out");
        }
        left -= n as u64;
    }
}

/// How many io-wq worker threads (`iou-wrk-*`) this process has right after the relay.
fn count_io_wq() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|c| c.starts_with("iou-wrk"))
                })
                .count()
        })
        .unwrap_or(0)
}
