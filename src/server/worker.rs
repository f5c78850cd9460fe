//! One worker: a thread pinned to its core running its own monoio runtime, with its own
//! listeners, pools and buffers. Workers share nothing mutable on the request path.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use monoio::io::AsyncReadRent;
use monoio::net::{TcpListener, TcpStream};

use crate::accesslog::{AccessLog, Sink};
use crate::config::{ListenerSpec, SnapshotHandle};
use crate::net::{with_timeout, write_all};
use crate::proxy::errors::error_response;
use crate::proxy::{close_in_stages, serve, ConnInfo, WorkerState};
use crate::throttle::Throttle;

use super::listener;
use super::runtime::{self, Driver};
use super::task::{Isolated, Tasks};

/// What a worker thread is started with.
pub struct WorkerSpec {
    pub id: usize,
    pub core: Option<core_affinity::CoreId>,
    pub driver: Driver,
    pub ring_entries: u32,
    pub handle: Arc<SnapshotHandle>,
    pub sink: Option<Arc<Sink>>,
    /// Read end of the control socket; a byte (or EOF) means "drain and stop".
    pub ctrl: std::os::unix::net::UnixStream,
    /// Reports `Ok` once this worker's listeners are bound.
    pub ready: Sender<Result<(), String>>,
}

/// Thread body: pin, build the runtime for the chosen driver, run until stopped.
pub fn run(spec: WorkerSpec) {
    if let Some(core) = spec.core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(
                worker = spec.id,
                core = core.id,
                "could not pin worker to its core"
            );
        }
    }
    let ready = spec.ready.clone();
    let built = match spec.driver {
        Driver::IoUring(flags) => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .uring_builder(runtime::builder(flags))
            .with_entries(spec.ring_entries)
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(main(spec))),
        Driver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(main(spec))),
    };
    if let Err(e) = built {
        let _ = ready.send(Err(format!("cannot build the runtime: {e}")));
    }
}

async fn main(spec: WorkerSpec) {
    let w = Rc::new(WorkerState::new(
        spec.id,
        spec.handle.clone(),
        AccessLog::new(spec.sink.clone()),
    ));
    let snap = w.generation().snap.clone();
    let mut listeners = Vec::new();
    for l in &snap.listeners {
        match listener::bind(l) {
            Ok(sock) => listeners.push((sock, l.clone())),
            Err(e) => {
                let _ = spec.ready.send(Err(format!(
                    "cannot listen on {} ({}): {e}",
                    l.addr, l.name
                )));
                return;
            }
        }
    }
    let stop = Rc::new(Stop::default());
    let listening: Vec<RawFd> = listeners.iter().map(|(s, _)| s.as_raw_fd()).collect();
    let tasks = Rc::new(Tasks::default());
    for (sock, l) in listeners {
        let ctx = (w.clone(), stop.clone(), tasks.clone());
        monoio::spawn(accept_loop(sock, l, ctx));
    }
    monoio::spawn(housekeeping(w.clone(), stop.clone()));
    let _ = spec.ready.send(Ok(()));
    wait_ctrl(spec.ctrl).await;
    w.draining.set(true);
    listening.into_iter().for_each(stop_listening);
    stop.fire();
    // Idle keep-alive connections close now; busy ones close after their response.
    w.waits.expire_idle();
    let deadline = Instant::now() + snap.drain_timeout;
    settle(&w, deadline).await;
    if w.in_flight.get() > 0 {
        tracing::warn!(
            worker = spec.id,
            requests = w.in_flight.get(),
            "drain_timeout passed; cutting requests still in flight"
        );
        // Through their own paths first, so each still gets its access-log line: waits for
        // an answer end in a 504 and tunnels close; then client sockets are shut down, which
        // ends relays in the middle of a body (a cut-off body, never one that looks whole).
        // What still runs after that is dropped.
        w.waits.expire_all();
        settle(&w, Instant::now() + CUT_GRACE).await;
        tasks.shut_down_clients();
        settle(&w, Instant::now() + CUT_GRACE).await;
        tasks.cut();
        let until = Instant::now() + CUT_GRACE;
        while tasks.live() > 0 && Instant::now() < until {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    w.log.flush();
}

/// How long each step of cutting requests at `drain_timeout` waits for them to end.
const CUT_GRACE: Duration = Duration::from_millis(200);

/// Waits until no request is in flight, or `until`.
async fn settle(w: &WorkerState, until: Instant) {
    while w.in_flight.get() > 0 && Instant::now() < until {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_ctrl(ctrl: std::os::unix::net::UnixStream) {
    let _ = ctrl.set_nonblocking(true);
    match monoio::net::UnixStream::from_std(ctrl) {
        Ok(mut s) => {
            let _ = s.read(vec![0u8; 1]).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "worker control socket unusable; worker will not drain on signal");
            std::future::pending::<()>().await;
        }
    }
}

async fn accept_loop(
    sock: TcpListener,
    l: ListenerSpec,
    (w, stop, tasks): (Rc<WorkerState>, Rc<Stop>, Rc<Tasks>),
) {
    let l = Rc::new(l);
    let accept_warnings = Throttle::new();
    loop {
        let accepted = monoio::select! {
            r = sock.accept() => r,
            _ = stop.wait() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                // At the limit an idle kept-alive connection, if any, makes room (it closes
                // within moments; the limit is exceeded by at most that many meanwhile).
                if w.open_connections.get() >= l.max_connections && !w.waits.evict_idle() {
                    monoio::spawn(reject_busy(stream, peer, w.clone()));
                    continue;
                }
                let info = ConnInfo::new(peer, "http", &l);
                let fd = stream.as_raw_fd();
                monoio::spawn(Isolated::new(
                    serve(stream, info, w.clone()),
                    tasks.clone(),
                    fd,
                ));
            }
            // The drain took the socket out of LISTEN (see `stop_listening`).
            Err(_) if stop.fired.get() => return,
            Err(e) => {
                // EMFILE/ENFILE: back off instead of spinning; `ringway check` explains the fix.
                if let Some(skipped) = accept_warnings.allow(Instant::now()) {
                    tracing::warn!(error = %e, listener = %l.addr, skipped, "accept failed");
                }
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Takes the listening socket out of LISTEN now. Closing it is not enough on io_uring: the
/// ring keeps a reference until the kernel tears it down, some milliseconds after the process
/// exits, and meanwhile the socket still takes connections (which then die) and holds the
/// port against an immediate restart.
fn stop_listening(fd: RawFd) {
    // SAFETY: shutdown(2) on a listening socket whose accept task holds it open until the
    // runtime ends, after this call.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Over the per-worker connection limit: a quick 503 and close, never a stall. It gets an
/// access-log line like every other answer (no request was read: `- -`), so an operator sees
/// the limit being hit.
async fn reject_busy(mut stream: TcpStream, peer: std::net::SocketAddr, w: Rc<WorkerState>) {
    let mut out = Vec::with_capacity(160);
    let body = error_response(&mut out, 503, "connection limit reached", true, false);
    if w.log.enabled() {
        w.log
            .log_unread(&peer.ip().to_string(), 503, body as u64, Duration::ZERO);
    }
    let (r, _) = with_timeout(Duration::from_secs(1), write_all(&mut stream, out))
        .await
        .unwrap_or((Err(std::io::ErrorKind::TimedOut.into()), Vec::new()));
    if r.is_ok() {
        // The client's request is still unread: FIN, then drain, within a second.
        let second = Duration::from_secs(1);
        close_in_stages(
            &mut stream,
            Vec::with_capacity(4096),
            &w.waits,
            second,
            second,
        )
        .await;
    }
}

/// Every tick: expire client waits past their deadline. Every second: close expired pooled
/// upstream connections and flush the access log.
async fn housekeeping(w: Rc<WorkerState>, stop: Rc<Stop>) {
    use crate::deadlines::TICK;
    let mut ticks = 0u32;
    loop {
        monoio::select! {
            _ = monoio::time::sleep(TICK) => {},
            _ = stop.wait() => return,
        }
        w.waits.sweep();
        w.log.follow_rotation();
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(10) {
            w.sweep();
            w.log.flush();
        }
    }
}

/// A one-shot, thread-local "stop now" for the accept loops (not on the request path).
#[derive(Default)]
struct Stop {
    fired: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Stop {
    fn fire(&self) {
        self.fired.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.fired.get() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
