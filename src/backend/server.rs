//! Listeners and worker threads: one monoio runtime per thread, each with its
//! own SO_REUSEPORT listener, accepting and spawning a task per connection.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::handlers::{self, Ctx};
use super::BackendStats;

/// Binds a listening socket synchronously so the port is known and accepting
/// before `Backend::start` returns. TCP_NODELAY is inherited by accepted sockets.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket)
}

/// What a worker thread needs; the listener moves into the thread.
pub struct WorkerSpec {
    pub listener: Socket,
    pub fixed_size: usize,
    pub stats: Arc<BackendStats>,
    pub stop: Arc<AtomicBool>,
}

pub fn spawn(index: usize, spec: WorkerSpec) -> io::Result<JoinHandle<io::Result<()>>> {
    std::thread::Builder::new()
        .name(format!("backend-{index}"))
        .spawn(move || run_worker(spec))
}

fn run_worker(spec: WorkerSpec) -> io::Result<()> {
    let mut rt = build_runtime()?;
    rt.block_on(accept_loop(spec))
}

/// io_uring with the ring flags measured to cut kernel time (design notes),
/// falling back to monoio's defaults (or epoll) where the kernel refuses them.
fn build_runtime() -> io::Result<
    monoio::FusionRuntime<
        monoio::time::TimeDriver<monoio::IoUringDriver>,
        monoio::time::TimeDriver<monoio::LegacyDriver>,
    >,
> {
    let mut urb = io_uring::IoUring::builder();
    urb.setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun();
    let tuned = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .uring_builder(urb)
        .build();
    match tuned {
        Ok(rt) => Ok(rt),
        Err(_) => monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build(),
    }
}

async fn accept_loop(spec: WorkerSpec) -> io::Result<()> {
    let listener = monoio::net::TcpListener::from_std(spec.listener.into())?;
    let ctx = Rc::new(Ctx {
        fixed_size: spec.fixed_size,
        stats: spec.stats,
    });
    loop {
        let accepted = listener.accept().await;
        // `stop` shuts the listener down, which wakes this accept with an error.
        if spec.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        match accepted {
            Ok((stream, _peer)) => {
                ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
                monoio::spawn(handlers::serve(stream, ctx.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "backend accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
