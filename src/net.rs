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

use crate::deadlines::SocketDeadlines;

/// A client- or upstream-side byte stream.
pub trait Stream:
    AsyncReadRent + AsyncWriteRent + CancelableAsyncReadRent + Split + 'static
{
    /// The socket to splice from/to, when bytes on the wire are the body bytes (plain TCP).
    fn splice_fd(&self) -> Option<RawFd>;

    /// Waits until a read would not block, without parking a buffer on the connection.
    fn wait_readable(&self) -> impl std::future::Future<Output = io::Result<()>>;

    /// The underlying socket (for deadlines that shut down a waiting connection).
    fn socket_fd(&self) -> RawFd;

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

    fn socket_fd(&self) -> RawFd {
        self.as_raw_fd()
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
///
/// Not an `async fn`: the returned future is the read in flight and nothing else (an async
/// fn or block would also keep its arguments, or a second copy of the read), and it sits
/// inside every waiting connection's state.
pub fn read_append<S: AsyncReadRent>(
    s: &mut S,
    mut buf: Vec<u8>,
) -> impl std::future::Future<Output = (io::Result<usize>, Vec<u8>)> + '_ {
    reserve_for_read(&mut buf);
    let len = buf.len();
    Map::new(
        s.read(buf.slice_mut(len..)),
        |(r, slice): monoio::BufResult<usize, SliceMut<Vec<u8>>>| (r, slice.into_inner()),
    )
}

/// A future whose output goes through `map`: what an `async fn` wrapper would do, without
/// storing the wrapper's arguments and the inner future a second time in its state.
pub struct Map<F, M> {
    fut: F,
    map: Option<M>,
}

impl<F, M> Map<F, M> {
    pub fn new(fut: F, map: M) -> Self {
        Map {
            fut,
            map: Some(map),
        }
    }
}

impl<F: std::future::Future, M: FnOnce(F::Output) -> O, O> std::future::Future for Map<F, M> {
    type Output = O;

    #[inline]
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<O> {
        // SAFETY: `fut` is structurally pinned and never moved out; `map` is not pinned (it is
        // taken by value once, and `Map` has no Drop impl that could observe it).
        let this = unsafe { self.get_unchecked_mut() };
        let fut = unsafe { std::pin::Pin::new_unchecked(&mut this.fut) };
        fut.poll(cx)
            .map(|out| (this.map.take().expect("Map polled after completion"))(out))
    }
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
/// (Not an `async fn`, for the reason given at [`Map`].)
pub fn write_all<S: AsyncWriteRent, B: IoBuf + 'static>(
    s: &mut S,
    buf: B,
) -> impl std::future::Future<Output = (io::Result<()>, B)> + '_ {
    use monoio::io::AsyncWriteRentExt;
    Map::new(s.write_all(buf), |(r, b): (io::Result<usize>, B)| {
        (r.map(|_| ()), b)
    })
}

/// Runs `f` with a deadline; `None` on timeout. The future is dropped on timeout, so only use
/// it where the connection is abandoned afterwards (or where dropping loses nothing, such as a
/// readiness wait). A plain function rather than an `async fn` so the future is not moved
/// into one more state machine on every I/O.
#[inline]
pub fn with_timeout<F: std::future::Future>(
    dur: Duration,
    f: F,
) -> impl std::future::Future<Output = Option<F::Output>> {
    Map::new(monoio::time::timeout(dur, f), Result::ok)
}

/// How long a write may go without the peer taking a byte, and the worker's deadlines that
/// enforce it.
#[derive(Clone, Copy)]
pub struct SendLimit<'a> {
    pub waits: &'a SocketDeadlines,
    pub timeout: Duration,
}

/// Writes all of `buf`, returning the buffer for reuse; fails with `ETIMEDOUT` when the peer
/// takes nothing for `limit.timeout`. The limit counts from the last progress, as nginx's
/// `send_timeout` does: a slow reader that keeps reading is never cut, one that stopped is (its
/// socket is shut down both ways, which fails the write). Not `TCP_USER_TIMEOUT`: the kernel
/// aborts a connection whose window only reopens in small steps (a slow reader) within about
/// that timeout, though bytes keep moving.
pub async fn write_all_within<S: AsyncWriteRent + AsStream, B: IoBuf + 'static>(
    s: &mut S,
    buf: B,
    limit: SendLimit<'_>,
) -> (io::Result<()>, B) {
    let deadline = limit
        .waits
        .register_closing(s.as_stream().socket_fd(), limit.timeout);
    // A peer that keeps reading is not stalled, even while the socket stays too full to take
    // more (writability needs room for half of what is queued).
    deadline.watch_queue_from_next_sweep(limit.timeout);
    let len = buf.bytes_init();
    let (mut buf, mut done) = (buf, 0);
    while done < len {
        let (r, slice) = s.write(buf.slice(done..)).await;
        buf = slice.into_inner();
        match r {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(n) => done += n,
            Err(_) if deadline.expired() => {
                return (Err(io::Error::from_raw_os_error(libc::ETIMEDOUT)), buf)
            }
            Err(e) => return (Err(e), buf),
        }
        if done < len {
            deadline.arm(limit.timeout);
        }
    }
    (Ok(()), buf)
}

/// Borrowed read half of a stream (see [`halves`]).
pub struct ReadHalf<'a, S>(*mut S, std::marker::PhantomData<&'a mut S>);
/// Borrowed write half of a stream (see [`halves`]).
pub struct WriteHalf<'a, S>(*mut S, std::marker::PhantomData<&'a mut S>);

/// Splits a borrowed stream so both directions can be driven at once (a request body still
/// uploading while the response already streams back). Sound under monoio's `Split` contract,
/// the same one its owned `into_split` relies on: reads and writes are independent ops on a
/// shared fd. The halves cannot outlive the borrow.
pub fn halves<S: Split>(s: &mut S) -> (ReadHalf<'_, S>, WriteHalf<'_, S>) {
    let p: *mut S = s;
    (
        ReadHalf(p, std::marker::PhantomData),
        WriteHalf(p, std::marker::PhantomData),
    )
}

impl<S: AsyncReadRent> AsyncReadRent for ReadHalf<'_, S> {
    #[inline]
    fn read<T: IoBufMut>(
        &mut self,
        buf: T,
    ) -> impl std::future::Future<Output = monoio::BufResult<usize, T>> {
        // SAFETY: see `halves`; only reads go through this half.
        unsafe { &mut *self.0 }.read(buf)
    }

    #[inline]
    fn readv<T: monoio::buf::IoVecBufMut>(
        &mut self,
        buf: T,
    ) -> impl std::future::Future<Output = monoio::BufResult<usize, T>> {
        // SAFETY: see `halves`.
        unsafe { &mut *self.0 }.readv(buf)
    }
}

impl<S: CancelableAsyncReadRent> CancelableAsyncReadRent for ReadHalf<'_, S> {
    #[inline]
    fn cancelable_read<T: IoBufMut>(
        &mut self,
        buf: T,
        c: monoio::io::CancelHandle,
    ) -> impl std::future::Future<Output = monoio::BufResult<usize, T>> {
        // SAFETY: see `halves`; only reads go through this half.
        unsafe { &mut *self.0 }.cancelable_read(buf, c)
    }

    #[inline]
    fn cancelable_readv<T: monoio::buf::IoVecBufMut>(
        &mut self,
        buf: T,
        c: monoio::io::CancelHandle,
    ) -> impl std::future::Future<Output = monoio::BufResult<usize, T>> {
        // SAFETY: see `halves`.
        unsafe { &mut *self.0 }.cancelable_readv(buf, c)
    }
}

impl<S: AsyncWriteRent> AsyncWriteRent for WriteHalf<'_, S> {
    #[inline]
    fn write<T: IoBuf>(
        &mut self,
        buf: T,
    ) -> impl std::future::Future<Output = monoio::BufResult<usize, T>> {
        // SAFETY: see `halves`; only writes go through this half.
        unsafe { &mut *self.0 }.write(buf)
    }

    #[inline]
    fn writev<T: monoio::buf::IoVecBuf>(
        &mut self,
        buf: T,
    ) -> impl std::future::Future<Output = monoio::BufResult<usize, T>> {
        // SAFETY: see `halves`.
        unsafe { &mut *self.0 }.writev(buf)
    }

    #[inline]
    fn flush(&mut self) -> impl std::future::Future<Output = io::Result<()>> {
        // SAFETY: see `halves`.
        unsafe { &mut *self.0 }.flush()
    }

    #[inline]
    fn shutdown(&mut self) -> impl std::future::Future<Output = io::Result<()>> {
        // SAFETY: see `halves`.
        unsafe { &mut *self.0 }.shutdown()
    }
}

/// The largest a relay buffer grows (see [`grow_if_full`]).
pub const RELAY_BUF_MAX: usize = 64 * 1024;

/// A relay buffer that a read filled completely is doubled (up to [`RELAY_BUF_MAX`]), so long
/// bodies move in fewer, larger reads while short exchanges keep small buffers.
pub fn grow_if_full(buf: &mut Vec<u8>) {
    if buf.len() == buf.capacity() && buf.capacity() < RELAY_BUF_MAX {
        buf.reserve(buf.capacity());
    }
}

/// The stream under a handle, for relays that work on the socket itself (splice). Halves from
/// [`halves`] hand out the stream they borrow.
pub trait AsStream {
    type Inner: Stream;
    fn as_stream(&self) -> &Self::Inner;
}

impl<S: Stream> AsStream for S {
    type Inner = S;
    fn as_stream(&self) -> &S {
        self
    }
}

impl<S: Stream> AsStream for ReadHalf<'_, S> {
    type Inner = S;
    fn as_stream(&self) -> &S {
        // SAFETY: see `halves`; shared access only reaches the fd and readiness waits.
        unsafe { &*self.0 }
    }
}

impl<S: Stream> AsStream for WriteHalf<'_, S> {
    type Inner = S;
    fn as_stream(&self) -> &S {
        // SAFETY: see `halves`.
        unsafe { &*self.0 }
    }
}
