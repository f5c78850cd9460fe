//! Relays that move bytes between a client and an upstream once framing is settled: the
//! bidirectional tunnel for upgraded connections (WebSocket) and the client-watching reads of
//! streamed responses (server-sent events).

pub mod stream;
pub mod tunnel;
