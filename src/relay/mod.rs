//! Relays that move bytes between a client and an upstream once framing is settled: the
//! bidirectional tunnel for upgraded connections (WebSocket).

pub mod tunnel;
