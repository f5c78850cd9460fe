//! Listeners and worker threads: one monoio runtime per thread, each with its
//! own SO_REUSEPORT listener, accepting and spawning a task per connection.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
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

/// Starts a worker and waits until its runtime is serving the listener, so a
/// worker that cannot start fails `Backend::start` instead of leaving a port
/// that accepts connections nobody answers.
pub fn spawn(index: usize, spec: WorkerSpec) -> io::Result<JoinHandle<io::Result<()>>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("backend-{index}"))
        .spawn(move || run_worker(spec, ready_tx))?;
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => Err(io::Error::other(format!(
            "backend worker {index} did not start"
        ))),
    }
}

fn run_worker(spec: WorkerSpec, ready: mpsc::Sender<io::Result<()>>) -> io::Result<()> {
    let mut rt = match build_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(io::Error::new(
                e.kind(),
                format!("backend runtime: {e}"),
            )));
            return Err(e);
        }
    };
    rt.block_on(accept_loop(spec, ready))
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

async fn accept_loop(spec: WorkerSpec, ready: mpsc::Sender<io::Result<()>>) -> io::Result<()> {
    let listener = match monoio::net::TcpListener::from_std(spec.listener.into()) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = ready.send(Err(io::Error::new(
                e.kind(),
                format!("backend listener: {e}"),
            )));
            return Err(e);
        }
    };
    let _ = ready.send(Ok(()));
    let ctx = Rc::new(Ctx {
        fixed_size: spec.fixed_size,
        stats: spec.stats,
    });
    let open = Rc::new(OpenConns::default());
    loop {
        let accepted = listener.accept().await;
        // `stop` shuts the listener down, which wakes this accept with an error.
        if spec.stop.load(Ordering::Acquire) {
            open.shut_all().await;
            return Ok(());
        }
        match accepted {
            Ok((stream, _peer)) => {
                ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let id = open.add(stream.as_raw_fd());
                let (ctx, open) = (ctx.clone(), open.clone());
                monoio::spawn(async move {
                    handlers::serve(stream, ctx).await;
                    // The stream is closed by now; forget its fd on this same thread.
                    open.remove(id);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "backend accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The worker's open connections. Dropping a monoio runtime does not drop its
/// tasks, so on stop the sockets are shut down to make every task finish.
#[derive(Default)]
struct OpenConns {
    next: Cell<u64>,
    fds: RefCell<HashMap<u64, RawFd>>,
}

impl OpenConns {
    fn add(&self, fd: RawFd) -> u64 {
        let id = self.next.get();
        self.next.set(id + 1);
        self.fds.borrow_mut().insert(id, fd);
        id
    }

    fn remove(&self, id: u64) {
        self.fds.borrow_mut().remove(&id);
    }

    /// Shuts every open socket down, then gives the tasks a bounded time to end
    /// (a `/delay` sleeping past it is left behind with a dead socket).
    async fn shut_all(&self) {
        for &fd in self.fds.borrow().values() {
            // SAFETY: fds are removed on this thread as soon as their stream
            // closes, so each one is still the connection it was registered as.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        for _ in 0..200 {
            if self.fds.borrow().is_empty() {
                return;
            }
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
