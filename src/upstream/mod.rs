//! Per-worker upstream connections: round-robin server choice that skips servers marked down
//! after a failed connect (passive health), connect with a deadline, and a pool of idle
//! keep-alive connections, each checked before reuse (see `quiet`). A pool belongs to one
//! worker; nothing here is shared across threads, so there are no locks.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::config::UpstreamSpec;
use crate::throttle::Throttle;

/// A connection to one upstream server.
pub struct UpConn {
    pub stream: TcpStream,
    pub server: usize,
    pub addr: SocketAddr,
    /// Taken from the pool (it may have been closed by the server while idle).
    pub reused: bool,
}

struct Idle {
    stream: TcpStream,
    since: Instant,
}

struct ServerPool {
    addr: SocketAddr,
    idle: Vec<Idle>,
    /// Passive health: after a failed connect the server is skipped until then (while
    /// another server is up), so requests stop paying for a dead server's connects.
    down_until: Option<Instant>,
}

struct UpstreamPool {
    servers: Vec<ServerPool>,
    next: Cell<usize>,
    max_idle: usize,
    idle_timeout: Duration,
    /// How long a server whose connect failed is skipped.
    fail_timeout: Duration,
}

/// Why no connection could be had. Either way the server is marked down and the caller may
/// try the upstream's next server; when none is left the client gets the status below.
#[derive(Debug)]
pub enum ConnectError {
    /// Refused, unreachable, reset: 502 at once.
    Failed(SocketAddr, io::Error),
    /// No answer within the connect timeout: 504.
    Timeout(SocketAddr),
    /// This host, not the server, could not make the connection: out of file descriptors,
    /// socket memory or ephemeral ports. The server is not marked down, no other server would
    /// fare better, and the client gets a 503 (the fault is the gateway's and passes).
    Local(SocketAddr, io::Error),
}

impl ConnectError {
    fn of(addr: SocketAddr, e: io::Error) -> ConnectError {
        match e.raw_os_error() {
            Some(
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL,
            ) => ConnectError::Local(addr, e),
            _ => ConnectError::Failed(addr, e),
        }
    }
}

thread_local! {
    static CONNECT_WARNINGS: Throttle = const { Throttle::new() };
}

/// A failed connect goes to the log (at most one line a second per worker, see `Throttle`),
/// as nginx logs each `connect() failed`: without it an operator sees only 502s.
fn warn_connect_failed(e: &ConnectError) {
    let Some(skipped) = CONNECT_WARNINGS.with(|t| t.allow(Instant::now())) else {
        return;
    };
    match e {
        ConnectError::Failed(addr, err) => {
            tracing::warn!(server = %addr, error = %err, skipped, "upstream connect failed")
        }
        ConnectError::Timeout(addr) => {
            tracing::warn!(server = %addr, skipped, "upstream connect timed out")
        }
        ConnectError::Local(addr, err) => tracing::warn!(
            server = %addr, error = %err, skipped,
            "upstream connect failed for want of local resources (see `ringway check`)"
        ),
    }
}

/// All upstream pools of one worker.
pub struct Pools {
    upstreams: Vec<RefCell<UpstreamPool>>,
    /// Replaced by a reload: connections coming back are closed, not pooled, since only the
    /// current generation's pools are swept for idle timeouts and closed connections.
    retired: Cell<bool>,
}

impl Pools {
    pub fn new(specs: &[UpstreamSpec]) -> Pools {
        let upstreams = specs
            .iter()
            .map(|u| {
                RefCell::new(UpstreamPool {
                    servers: u
                        .servers
                        .iter()
                        .map(|&addr| ServerPool {
                            addr,
                            idle: Vec::new(),
                            down_until: None,
                        })
                        .collect(),
                    next: Cell::new(0),
                    max_idle: u.max_idle,
                    idle_timeout: u.idle_timeout,
                    fail_timeout: u.fail_timeout,
                })
            })
            .collect();
        Pools {
            upstreams,
            retired: Cell::new(false),
        }
    }

    /// After a reload: closes the idle connections and pools no more (requests in flight on
    /// the old config still finish; their connections then close).
    pub fn retire(&self) {
        self.retired.set(true);
        for p in &self.upstreams {
            for s in &mut p.borrow_mut().servers {
                s.idle.clear();
            }
        }
    }

    /// An idle pooled connection to the next server in turn, or a new one (always new when
    /// `fresh`: the retry after a stale pooled connection must not meet another stale one).
    pub async fn get(
        &self,
        upstream: usize,
        connect_timeout: Duration,
        fresh: bool,
        now: Instant,
    ) -> Result<UpConn, ConnectError> {
        let (server, addr) = {
            let mut p = self.upstreams[upstream].borrow_mut();
            let i = p.next_up(now);
            if let Some(stream) = p.take_idle(i, now).filter(|_| !fresh) {
                let addr = p.servers[i].addr;
                return Ok(UpConn {
                    stream,
                    server: i,
                    addr,
                    reused: true,
                });
            }
            (i, p.servers[i].addr)
        };
        // Boxed: the connect timer is large and 128-byte aligned; keeping it out of the caller's
        // future keeps every exchange small (connects are rare with keep-alive pools).
        let connected = Box::pin(connect(addr, connect_timeout)).await;
        // Down from when the failure is known (a connect timeout takes its time), not from
        // when the connect began, or a server down for less than the timeout is never skipped.
        let stream = connected.inspect_err(|e| {
            warn_connect_failed(e);
            if !matches!(e, ConnectError::Local(..)) {
                self.mark_down(upstream, server, Instant::now());
            }
        })?;
        self.upstreams[upstream].borrow_mut().servers[server].down_until = None;
        Ok(UpConn {
            stream,
            server,
            addr,
            reused: false,
        })
    }

    /// Skips `server` for the upstream's `fail_timeout` (its pooled connections go with it).
    fn mark_down(&self, upstream: usize, server: usize, now: Instant) {
        let mut p = self.upstreams[upstream].borrow_mut();
        let until = now + p.fail_timeout;
        let s = &mut p.servers[server];
        s.down_until = Some(until);
        s.idle.clear();
    }

    /// Returns a connection that finished a clean exchange.
    /// `now` is the worker's tick clock: idle ages need no clock read per request.
    pub fn put(&self, upstream: usize, conn: UpConn, now: Instant) {
        if self.retired.get() {
            return;
        }
        let mut p = self.upstreams[upstream].borrow_mut();
        let max = p.max_idle;
        let s = &mut p.servers[conn.server];
        if s.idle.len() < max {
            s.idle.push(Idle {
                stream: conn.stream,
                since: now,
            });
        }
    }

    /// Closes pooled connections idle past their timeout, and those the server closed (or
    /// sent stray bytes on) while they idled, so they do not sit in CLOSE-WAIT holding a
    /// descriptor until their timeout: one poll(2) over every idle connection of the worker
    /// (run every second by the worker).
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut fds = Vec::new();
        for p in &self.upstreams {
            let mut p = p.borrow_mut();
            let t = p.idle_timeout;
            for s in &mut p.servers {
                s.idle.retain(|c| now.duration_since(c.since) < t);
                fds.extend(s.idle.iter().map(|c| watched(&c.stream)));
            }
        }
        if fds.is_empty() {
            return;
        }
        // SAFETY: `fds` holds open descriptors (the pools keep them) and outlives the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        if ready <= 0 {
            return;
        }
        let mut states = fds.iter().map(|p| p.revents == 0);
        for p in &self.upstreams {
            for s in &mut p.borrow_mut().servers {
                s.idle.retain(|_| states.next().unwrap_or(true));
            }
        }
    }
}

impl UpstreamPool {
    /// The next server in turn that is not marked down; when all are, the next in turn (a
    /// request still gets its try, and a server that came back is found). A server whose
    /// `fail_timeout` has passed gets one request as a probe (as nginx's `max_fails=1`): its
    /// window starts again at once, so the requests after it keep skipping the server until
    /// the probe connects (which clears the mark) or fails (which renews it), instead of all
    /// stalling together on a server that is still down.
    fn next_up(&mut self, now: Instant) -> usize {
        let n = self.servers.len();
        let start = self.next.get();
        let pick = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.servers[i].down_until.is_none_or(|t| t <= now))
            .unwrap_or(start);
        self.next.set((pick + 1) % n);
        let fail_timeout = self.fail_timeout;
        let s = &mut self.servers[pick];
        if s.down_until.is_some_and(|t| t <= now) {
            s.down_until = Some(now + fail_timeout);
        }
        pick
    }

    /// Most recently used first: it is the least likely to have been closed by the server.
    fn take_idle(&mut self, server: usize, now: Instant) -> Option<TcpStream> {
        let t = self.idle_timeout;
        let idle = &mut self.servers[server].idle;
        while let Some(c) = idle.pop() {
            if now.saturating_duration_since(c.since) < t && quiet(&c.stream) {
                return Some(c.stream);
            }
        }
        None
    }
}

/// True when an idle upstream connection has nothing to read: no EOF (the server closed it
/// while it idled), no error and no bytes (a server that sent more than its response said, a
/// body after a HEAD answer, a second response). Bytes found here belong to no request:
/// reusing the connection would hand them to the next client as its response, so it is
/// closed instead.
///
/// One zero-timeout poll(2) per reuse (it reads the socket's state without taking the socket
/// lock a peeking recv would). With epoll, nginx and HAProxy get this from a read event left
/// armed on idle connections; on a completion ring that would be an op parked on each one.
fn quiet(s: &TcpStream) -> bool {
    let mut p = watched(s);
    // SAFETY: one pollfd on the stack, an open fd, no timeout.
    let ready = unsafe { libc::poll(&mut p, 1, 0) };
    if ready != 0 {
        tracing::debug!(
            revents = p.revents,
            "idle upstream connection not quiet; closed"
        );
    }
    ready == 0
}

/// A poll(2) entry that reports anything an idle connection should not have: bytes, EOF, an
/// error.
fn watched(s: &TcpStream) -> libc::pollfd {
    libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => {
            // Accepted sockets inherit this from the listener; connected ones need it set.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(ConnectError::of(addr, e)),
        Err(_) => Err(ConnectError::Timeout(addr)),
    }
}
