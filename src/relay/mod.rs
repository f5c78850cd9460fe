//! Relays that move bytes between a client and an upstream once framing is settled: the
//! bidirectional tunnel for upgraded connections (WebSocket), the client-watching reads of
//! streamed responses (server-sent events), and the zero-copy splice relay for
//! length-delimited bodies with its per-worker pipe pool.

pub mod pipes;
pub mod splice;
pub mod stream;
pub mod tunnel;
