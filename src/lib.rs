//! ringway: a thread-per-core HTTP/1.1 API gateway on io_uring.
pub mod config;
pub mod hostcheck;
