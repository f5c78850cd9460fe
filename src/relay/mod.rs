//! Relays that move bytes between a client and an upstream once framing is settled: the
//! bidirectional tunnel for upgraded connections (WebSocket; spliced both ways on plain TCP),
//! the client-watching, buffer-free-when-idle reads of streamed responses (server-sent
//! events), and the zero-copy splice relays (length-delimited bodies, tunnel directions until
//! EOF) with their per-worker pipe pool.

pub mod pipes;
pub mod splice;
pub mod stream;
pub mod tunnel;
