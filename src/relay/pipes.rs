//! The per-worker pool of pipes that splice relays move body bytes through.
//!
//! A pipe is the only buffer a splice relay has, so its capacity (config `pipe_size`, set with
//! F_SETPIPE_SZ and capped by `fs.pipe-max-size`) is the most a relay ever holds per direction.
//! Pipes are reused: creating and sizing one costs three syscalls, a relay needs one per body.
//! A pipe still holding bytes (a relay that failed midway) is closed, never pooled, so the next
//! body can never receive a stranger's leftovers.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Idle pipes kept per worker; a burst of concurrent relays beyond this makes (and later closes)
/// extra pipes instead of holding their kernel memory forever.
const POOL_MAX: usize = 16;

/// One pipe and how many bytes sit in it.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Capacity in bytes (what F_SETPIPE_SZ granted).
    pub cap: usize,
    /// Bytes spliced in and not yet spliced out.
    pub len: usize,
}

impl Pipe {
    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// A non-blocking, close-on-exec pipe sized to `want` bytes where the kernel allows.
    fn open(want: usize) -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let cap = set_size(write.as_raw_fd(), want)?;
        Ok(Pipe {
            read,
            write,
            cap,
            len: 0,
        })
    }
}

/// Sets the pipe's capacity; when the kernel refuses (an unprivileged user over
/// `fs.pipe-user-pages-soft` gets EPERM) the pipe keeps its default size, which still works.
fn set_size(fd: RawFd, want: usize) -> io::Result<usize> {
    // SAFETY: fcntl on a pipe fd we own; F_SETPIPE_SZ takes an int and touches no memory.
    let got = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, want as libc::c_int) };
    if got > 0 {
        return Ok(got as usize);
    }
    // SAFETY: as above; F_GETPIPE_SZ takes no argument.
    let got = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    if got > 0 {
        Ok(got as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The largest pipe an unprivileged process may ask for, or `None` when it cannot be read.
fn pipe_max_size() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A worker's reusable pipes, plus whether splice works here at all.
pub struct PipePool {
    idle: RefCell<Vec<Pipe>>,
    /// The capacity asked of each new pipe.
    size: usize,
    /// Set after splice failed with EINVAL/ENOSYS: this worker copies from then on.
    disabled: Cell<bool>,
    /// A smaller pipe than asked for was logged already.
    warned_small: Cell<bool>,
}

impl PipePool {
    /// A pool of pipes of `pipe_size` bytes, capped by `fs.pipe-max-size`.
    pub fn new(pipe_size: usize) -> PipePool {
        let size = match pipe_max_size() {
            Some(max) if pipe_size > max => {
                tracing::warn!(
                    pipe_size,
                    max,
                    "pipe_size is above fs.pipe-max-size; using the maximum \
                     (raise fs.pipe-max-size to use the configured size)"
                );
                max
            }
            _ => pipe_size,
        };
        PipePool {
            idle: RefCell::new(Vec::new()),
            size,
            disabled: Cell::new(false),
            warned_small: Cell::new(false),
        }
    }

    /// The capacity new pipes are asked for.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A pooled pipe, or a new one; `None` when splice is off for this worker or no pipe can
    /// be made (fd limit): the caller copies instead.
    pub fn take(&self) -> Option<Pipe> {
        if self.disabled.get() {
            return None;
        }
        if let Some(p) = self.idle.borrow_mut().pop() {
            return Some(p);
        }
        match Pipe::open(self.size) {
            Ok(p) => {
                if p.cap < self.size && !self.warned_small.replace(true) {
                    tracing::warn!(
                        asked = self.size,
                        got = p.cap,
                        "the kernel refused the pipe size (fs.pipe-user-pages-soft reached?); \
                         splice relays use smaller pipes"
                    );
                }
                Some(p)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot create a splice pipe; copying this body");
                None
            }
        }
    }

    /// Returns a pipe after a relay; one with leftover bytes is closed instead.
    pub fn put(&self, pipe: Pipe) {
        let mut idle = self.idle.borrow_mut();
        if pipe.len == 0 && idle.len() < POOL_MAX {
            idle.push(pipe);
        }
    }

    /// Turns splice off for this worker after the kernel refused it; logs once.
    pub fn disable(&self, why: &io::Error) {
        if !self.disabled.replace(true) {
            tracing::warn!(error = %why, "splice is not supported here; this worker relays bodies by copy");
        }
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled.get()
    }

    /// Idle pipes held (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_sized_and_reused() {
        let pool = PipePool::new(256 * 1024);
        let p = pool.take().expect("pipe");
        assert!(p.cap >= 64 * 1024, "cap {}", p.cap);
        let fd = p.read_fd();
        pool.put(p);
        assert_eq!(pool.idle_count(), 1);
        assert_eq!(pool.take().expect("pipe").read_fd(), fd);
    }

    #[test]
    fn pipe_with_leftovers_is_not_pooled() {
        let pool = PipePool::new(64 * 1024);
        let mut p = pool.take().expect("pipe");
        p.len = 10;
        pool.put(p);
        assert_eq!(pool.idle_count(), 0);
    }

    #[test]
    fn disabled_pool_gives_no_pipes() {
        let pool = PipePool::new(64 * 1024);
        pool.disable(&io::Error::from_raw_os_error(libc::EINVAL));
        assert!(pool.take().is_none());
    }
}
