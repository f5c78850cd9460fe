//! The request's path through a worker: the connection loop ([`conn`]), one exchange
//! ([`exchange`]), route selection ([`router`]), ringway's own error answers ([`errors`]) and
//! the state a worker owns ([`state`]).

pub mod conn;
pub mod errors;
pub mod exchange;
mod response;
pub mod router;
pub mod state;
mod upload;

pub use conn::{close_in_stages, serve};
pub use state::{ConnInfo, WorkerState};
