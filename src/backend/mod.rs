//! The built-in backend: a real HTTP/1.1 origin server on monoio, used by
//! `ringway demo`, `ringway backend`, the integration tests and benchmarks.
//!
//! Endpoints (the path decides; query strings are allowed):
//! - `/size/N` — N bytes of [`pattern`], Content-Length, streamed in 64 KiB writes.
//! - `/chunked/N` — the same bytes, chunked in pieces of up to 16 KiB.
//! - `/echo` — the request body streamed back with the request's framing.
//! - `/status/N` — status N, body `{"status":N}` (none for 1xx, 204, 304).
//! - `/delay/MS` — waits, then answers like the default endpoint.
//! - `/headers` — the request head exactly as received.
//! - `/sse?count=N&interval_ms=I[&stamp=1]` — N close-delimited server-sent events (defaults
//!   10, 100 ms); `stamp=1` adds the send time (µs since the epoch) to each event's data.
//! - `/ws` — WebSocket echo (101 handshake, frames echoed as they arrive; see `ws.rs`).
//! - anything else — `fixed_size` bytes of `x`.
//!
//! Files: `server.rs` binds and runs worker threads, `conn.rs` owns a
//! connection's buffers and body decoding, `request.rs` parses heads and
//! routes, `handlers.rs` writes the responses.

mod conn;
mod handlers;
mod request;
mod server;
mod ws;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Port 0 picks a free port; `Backend::addr` tells which.
    pub addr: SocketAddr,
    /// Body size of the default endpoint.
    pub fixed_size: usize,
    /// Worker threads, each with its own SO_REUSEPORT listener.
    pub threads: usize,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            fixed_size: 50,
            threads: 1,
        }
    }
}

/// Exact counters across all worker threads.
#[derive(Debug, Default)]
pub struct BackendStats {
    pub accepted: AtomicU64,
    pub requests: AtomicU64,
}

/// A running backend. Dropping it (or `stop`) shuts the listeners and joins the threads.
pub struct Backend {
    pub addr: SocketAddr,
    pub stats: Arc<BackendStats>,
    stop: Arc<AtomicBool>,
    /// Duplicates of the listening sockets, kept to shut them down on stop.
    listeners: Vec<socket2::Socket>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Backend {
    /// Binds every listener before returning, so `addr` is already accepting.
    pub fn start(opts: BackendOptions) -> io::Result<Backend> {
        let threads = opts.threads.max(1);
        let reuse_port = threads > 1;
        let first = server::bind(opts.addr, reuse_port)?;
        let addr = first
            .local_addr()?
            .as_socket()
            .ok_or(io::ErrorKind::InvalidInput)?;
        let mut sockets = vec![first];
        for _ in 1..threads {
            sockets.push(server::bind(addr, true)?);
        }
        let mut backend = Backend {
            addr,
            stats: Arc::new(BackendStats::default()),
            stop: Arc::new(AtomicBool::new(false)),
            listeners: Vec::with_capacity(threads),
            threads: Vec::with_capacity(threads),
        };
        for (index, listener) in sockets.into_iter().enumerate() {
            backend.listeners.push(listener.try_clone()?);
            let spec = server::WorkerSpec {
                listener,
                fixed_size: opts.fixed_size,
                stats: backend.stats.clone(),
                stop: backend.stop.clone(),
            };
            backend.threads.push(server::spawn(index, spec)?);
        }
        Ok(backend)
    }

    /// Stops accepting, drops open connections and joins the worker threads.
    pub fn stop(self) {
        drop(self);
    }

    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }

    /// Waits for the worker threads (they only end on error or stop).
    fn join(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for handle in self.threads.drain(..) {
            let outcome = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("backend worker panicked")));
            if let Err(e) = outcome {
                result = Err(e);
            }
        }
        result
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Shutting a listening socket down wakes its pending accept (io_uring
        // and epoll alike), and the worker then sees the stop flag.
        for listener in &self.listeners {
            let _ = listener.shutdown(std::net::Shutdown::Both);
        }
        let _ = self.join();
    }
}

/// Runs a backend until its threads fail (for the `ringway backend` command).
pub fn run_forever(opts: BackendOptions) -> io::Result<()> {
    let mut backend = Backend::start(opts)?;
    tracing::info!(addr = %backend.addr, "backend listening");
    backend.join()
}

/// Byte `i` of the `/size` and `/chunked` bodies.
pub fn pattern_byte(i: u64) -> u8 {
    b'a' + (i % 26) as u8
}

/// The first `n` bytes of the `/size` and `/chunked` bodies (for tests).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n as u64).map(pattern_byte).collect()
}

/// `ringway backend`: serve the built-in backend.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Body size of the default endpoint, in bytes.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub size: usize,
    /// Worker threads (one io_uring runtime each).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
}

impl BackendArgs {
    pub fn run(self) -> anyhow::Result<i32> {
        let opts = BackendOptions {
            addr: self.listen,
            fixed_size: self.size,
            threads: self.threads,
        };
        let threads = opts.threads.max(1);
        let mut backend = Backend::start(opts)
            .map_err(|e| anyhow::anyhow!("backend cannot listen on {}: {e}", self.listen))?;
        eprintln!(
            "ringway backend listening on {} ({threads} thread(s))",
            backend.addr
        );
        backend
            .join()
            .map_err(|e| anyhow::anyhow!("backend on {} failed: {e}", backend.addr))?;
        Ok(0)
    }
}

#[cfg(test)]
mod tests;
