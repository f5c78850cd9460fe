//! State owned by one worker (never shared across threads) and the per-connection buffers it
//! lends out while a connection is active.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::accesslog::AccessLog;
use crate::config::{ListenerSpec, Snapshot, SnapshotHandle};
use crate::http::{RequestHead, ResponseHead};
use crate::net::SendLimit;
use crate::relay::pipes::PipePool;
use crate::upstream::Pools;

use super::router::Router;
use crate::deadlines::SocketDeadlines;

/// What one config generation gives a worker: the snapshot, its router and its upstream pools.
/// Connections hold the generation they were accepted under until they close.
pub struct Generation {
    pub snap: Arc<Snapshot>,
    pub router: Router,
    pub pools: Pools,
    pub id: u64,
}

impl Generation {
    fn new(snap: Arc<Snapshot>, id: u64) -> Generation {
        Generation {
            router: Router::new(&snap.routes),
            pools: Pools::new(&snap.upstreams),
            snap,
            id,
        }
    }
}

/// Per-worker state: counters, pools and buffers belong to this thread alone.
pub struct WorkerState {
    pub id: usize,
    handle: Arc<SnapshotHandle>,
    current: RefCell<Rc<Generation>>,
    // Boxed: connections hold `Option<Box<Buffers>>`, so lending one out is a pointer move.
    #[allow(clippy::vec_box)]
    buffers: RefCell<Vec<Box<Buffers>>>,
    pub log: AccessLog,
    /// Set on SIGTERM: finish in-flight requests, take no new ones.
    pub draining: Cell<bool>,
    /// Requests between a complete head and the end of their response.
    pub in_flight: Cell<usize>,
    pub open_connections: Cell<usize>,
    /// Idle connections currently waiting with buffers (see `proxy::conn`).
    pub hot_idle: Cell<usize>,
    /// Deadlines of waiting sockets: client keep-alive and heads, upstream response heads.
    pub waits: SocketDeadlines,
    /// Pipes for splice relays. Sized from the config at worker start (a reload that changes
    /// `pipe_size` takes effect on restart).
    pub pipes: PipePool,
}

/// Starting size of each connection buffer: enough for typical heads and small bodies; body
/// relays grow theirs (up to `net::RELAY_BUF_MAX`) when reads keep filling them.
pub const BUF_START: usize = 4 * 1024;

/// Free buffer sets kept for reuse; more than this go back to the allocator.
const BUFFER_POOL_MAX: usize = 64;

impl WorkerState {
    pub fn new(id: usize, handle: Arc<SnapshotHandle>, log: AccessLog) -> WorkerState {
        let gen = handle.generation();
        let snap = handle.load();
        let pipes = PipePool::new(snap.pipe_size);
        WorkerState {
            id,
            current: RefCell::new(Rc::new(Generation::new(snap, gen))),
            handle,
            buffers: RefCell::new(Vec::new()),
            log,
            draining: Cell::new(false),
            in_flight: Cell::new(0),
            open_connections: Cell::new(0),
            hot_idle: Cell::new(0),
            waits: SocketDeadlines::default(),
            pipes,
        }
    }

    /// The current generation (each request takes it when its head arrives); picks up a
    /// reloaded snapshot (one atomic load when unchanged).
    pub fn generation(&self) -> Rc<Generation> {
        let gen = self.handle.generation();
        if self.current.borrow().id != gen {
            let g = Generation::new(self.handle.load(), gen);
            let old = std::mem::replace(&mut *self.current.borrow_mut(), Rc::new(g));
            // Connections still holding the old generation keep it alive; its pools must not
            // keep idle upstream connections that no sweep looks at any more.
            old.pools.retire();
        }
        self.current.borrow().clone()
    }

    /// Whether `g` is still the current generation (no reload since it was taken).
    pub fn is_current(&self, g: &Generation) -> bool {
        self.handle.generation() == g.id
    }

    pub fn take_buffers(&self) -> Box<Buffers> {
        self.buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Box::new(Buffers::new()))
    }

    pub fn put_buffers(&self, mut b: Box<Buffers>) {
        let mut pool = self.buffers.borrow_mut();
        if pool.len() < BUFFER_POOL_MAX {
            b.reset();
            pool.push(b);
        }
    }

    /// Closes expired pooled upstream connections. Picks up a reload first, so the old
    /// config's pools are retired within a sweep even on a worker no request reaches.
    pub fn sweep(&self) {
        self.generation().pools.sweep();
    }
}

/// The buffers an active connection works with. Idle connections give them back, so an idle
/// keep-alive connection costs only its task and socket.
pub struct Buffers {
    /// Bytes read from the client; `cpos` is where unconsumed bytes start.
    pub cbuf: Vec<u8>,
    pub cpos: usize,
    /// Bytes read from the upstream.
    pub ubuf: Vec<u8>,
    /// Heads (and small bodies) being written.
    pub out: Vec<u8>,
    /// Request body bytes on their way upstream (separate from `out`: both directions may be
    /// in flight at once).
    pub bout: Vec<u8>,
    pub req: RequestHead,
    pub resp: ResponseHead,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            cbuf: Vec::with_capacity(BUF_START),
            cpos: 0,
            ubuf: Vec::with_capacity(BUF_START),
            out: Vec::with_capacity(BUF_START),
            bout: Vec::new(),
            req: RequestHead::default(),
            resp: ResponseHead::default(),
        }
    }

    fn reset(&mut self) {
        self.cbuf.clear();
        self.cpos = 0;
        self.ubuf.clear();
        self.out.clear();
        // Heads grown by one huge request should not stay huge in the pool.
        self.cbuf.shrink_to(BUF_START);
        self.ubuf.shrink_to(BUF_START);
        self.out.shrink_to(BUF_START);
        self.bout.clear();
        self.bout.shrink_to(BUF_START);
    }

    /// Bytes from the client not yet consumed.
    pub fn client_pending(&self) -> &[u8] {
        &self.cbuf[self.cpos..]
    }

    /// Drops consumed client bytes, keeping a pipelined next request at the front.
    pub fn compact(&mut self) {
        self.cbuf.drain(..self.cpos);
        self.cpos = 0;
    }
}

/// Facts about one client connection.
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// Client IP as text, for X-Forwarded-For and the access log.
    pub peer_ip: String,
    /// `http` or `https`, for X-Forwarded-Proto.
    pub proto: &'static str,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// How long a write to the client may go without the client taking a byte.
    pub send_timeout: Duration,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, proto: &'static str, l: &ListenerSpec) -> ConnInfo {
        ConnInfo {
            peer,
            peer_ip: peer.ip().to_string(),
            proto,
            header_timeout: l.header_timeout,
            keepalive_timeout: l.keepalive_timeout,
            send_timeout: l.send_timeout,
        }
    }

    /// The limit on writes to this client.
    pub fn send_limit<'a>(&self, waits: &'a SocketDeadlines) -> SendLimit<'a> {
        SendLimit {
            waits,
            timeout: self.send_timeout,
        }
    }
}
