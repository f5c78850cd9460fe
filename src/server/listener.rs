//! Per-worker listening sockets: every worker binds its own with SO_REUSEPORT, so the kernel
//! spreads connections across workers and no accept queue is shared.

use std::io;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::ListenerSpec;

/// Binds a listener for the current worker; call inside the worker's runtime.
pub fn bind(spec: &ListenerSpec) -> io::Result<monoio::net::TcpListener> {
    let addr = spec.addr;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Inherited by accepted sockets: responses go out without Nagle delay.
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(spec.backlog.min(i32::MAX as u32) as i32)?;
    monoio::net::TcpListener::from_std(socket.into())
}

/// Fails when something already listens on the listener's address. Workers bind with
/// SO_REUSEPORT, which would otherwise let a second ringway (or any reuseport server of the
/// same user) share the port silently, the kernel splitting connections between them. A
/// socket without SO_REUSEPORT cannot bind where another socket listens, so one such bind
/// (then dropped, never listening) tells.
pub fn ensure_free(spec: &ListenerSpec) -> io::Result<()> {
    let addr = spec.addr;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Still allowed past connections in TIME_WAIT, as the workers' sockets are.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())
}
