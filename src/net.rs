//! The connection type the request path is generic over, and read helpers with deadlines.
//!
//! Everything above this module takes `S: Stream`, so a TLS stream can stand in for TCP by
//! implementing the trait; `splice_fd` is what lets plain TCP bodies bypass user space.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, CancelableAsyncReadRent, Canceller, Split};
use monoio::net::TcpStream;

/// A client- or upstream-side byte stream.
pub trait Stream:
    AsyncReadRent + AsyncWriteRent + CancelableAsyncReadRent + Split + 'static
{
    /// The socket to splice from/to, when bytes on the wire are the body bytes (plain TCP).
    fn splice_fd(&self) -> Option<RawFd>;

    /// Waits until a read would not block, without parking a buffer on the connection.
    fn wait_readable(&self) -> impl std::future::Future<Output = io::Result<()>>;

    /// Waits until a write would not block (for relays that write with their own syscalls).
    fn wait_writable(&self) -> impl std::future::Future<Output = io::Result<()>>;
}

impl Stream for TcpStream {
    fn splice_fd(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }

    async fn wait_readable(&self) -> io::Result<()> {
        self.readable(false).await
    }

    async fn wait_writable(&self) -> io::Result<()> {
        self.writable(false).await
    }
}

/// The outcome of a read that may time out. `Timeout` guarantees no bytes were consumed.
pub enum Read {
    Data(usize),
    Eof,
    Timeout,
}

/// Reads into the spare capacity of `buf` (appending), growing it first if it is full so a
/// full buffer is never mistaken for EOF.
pub async fn read_append<S: AsyncReadRent>(
    s: &mut S,
    mut buf: Vec<u8>,
) -> (io::Result<usize>, Vec<u8>) {
    reserve_for_read(&mut buf);
    let len = buf.len();
    let (r, slice) = s.read(buf.slice_mut(len..)).await;
    (r, slice.into_inner())
}

/// Like [`read_append`] with a deadline; on timeout the read is cancelled and waited for, so a
/// read racing the timer never loses bytes (the connection stays usable).
pub async fn read_append_timeout<S: CancelableAsyncReadRent>(
    s: &mut S,
    mut buf: Vec<u8>,
    dur: Duration,
) -> (io::Result<Read>, Vec<u8>) {
    reserve_for_read(&mut buf);
    let len = buf.len();
    let canceller = Canceller::new();
    let mut fut = pin!(s.cancelable_read(buf.slice_mut(len..), canceller.handle()));
    let mut timer = pin!(monoio::time::sleep(dur));
    let timed_out = monoio::select! {
        r = &mut fut => return finish(r),
        _ = &mut timer => true,
    };
    debug_assert!(timed_out);
    canceller.cancel();
    match fut.await {
        (Err(e), slice) if is_cancelled(&e) => (Ok(Read::Timeout), slice.into_inner()),
        r => finish(r),
    }
}

fn finish(r: (io::Result<usize>, SliceMut<Vec<u8>>)) -> (io::Result<Read>, Vec<u8>) {
    let (r, slice) = r;
    let r = r.map(|n| if n == 0 { Read::Eof } else { Read::Data(n) });
    (r, slice.into_inner())
}

fn is_cancelled(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ECANCELED) || e.kind() == io::ErrorKind::Interrupted
}

fn reserve_for_read(buf: &mut Vec<u8>) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(buf.capacity().max(4096));
    }
}

/// Writes all of `buf[..]`, returning the buffer for reuse.
pub async fn write_all<S: AsyncWriteRent, B: IoBuf>(s: &mut S, buf: B) -> (io::Result<()>, B) {
    use monoio::io::AsyncWriteRentExt;
    let (r, b) = s.write_all(buf).await;
    (r.map(|_| ()), b)
}

/// Runs `f` with a deadline; `None` on timeout. The future is dropped on timeout, so only use
/// it where the connection is abandoned afterwards.
pub async fn with_timeout<F: std::future::Future>(dur: Duration, f: F) -> Option<F::Output> {
    monoio::time::timeout(dur, f).await.ok()
}
