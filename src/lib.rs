//! ringway: a thread-per-core HTTP/1.1 API gateway on io_uring.
pub mod backend;
pub mod config;
