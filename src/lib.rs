//! ringway: a thread-per-core HTTP/1.1 API gateway on io_uring.
//!
//! A request crosses the modules in one direction:
//!
//! ```text
//! server ── accepts on a per-core SO_REUSEPORT listener, one pinned monoio runtime per core
//!   └► proxy::conn ── HTTP/1.1 connection loop over any `net::Stream` (TCP now, TLS later)
//!        └► http ── strict head parsing, path normalisation and body framing (no routing,
//!             no sockets)
//!        └► proxy::exchange ── route → upstream head → bodies → response; the four policy
//!             phases (request headers, request body, response headers, response body) hook in here
//!             └► upstream ── per-worker pools and connects
//!             └► relay ── tunnels (WebSocket, own idle timeout, half-closes passed on,
//!                  spliced both ways on plain TCP), client-watching reads of streamed
//!                  responses (SSE; idle ones park no buffer), and zero-copy splice relays for
//!                  bodies and tunnels (per-worker pipe pool in `WorkerState::pipes`)
//! ```
//!
//! Waits that end a connection when they expire (idle keep-alive, slow heads, an upstream's
//! response head, an idle tunnel) hold no timer: they register their sockets in the worker's
//! `deadlines::SocketDeadlines`, which a 100 ms tick sweeps.
//!
//! Per-worker state (`proxy::WorkerState`: pools, buffers, counters, access log) is owned by its
//! worker thread; the only shared state is the config snapshot behind `config::SnapshotHandle`,
//! which a reload swaps.

pub mod accesslog;
pub mod alloc;
pub mod backend;
pub mod config;
pub mod deadlines;
pub mod demo;
pub mod hostcheck;
pub mod http;
pub mod net;
pub mod proxy;
pub mod relay;
pub mod server;
pub mod throttle;
pub mod upstream;
