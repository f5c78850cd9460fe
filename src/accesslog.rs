//! One access-log line per request, buffered per worker and written in batches, so logging
//! costs no syscall per request.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where lines go; shared by workers, touched only on flush.
pub enum Sink {
    Stdout,
    File {
        file: File,
        path: String,
        rotation: Rotation,
    },
}

/// A log rotation in progress: each worker writes out its buffered lines before the file is
/// reopened, so the lines of requests served before SIGUSR1 stay in the rotated file (as
/// nginx's workers do when told to reopen).
#[derive(Default)]
pub struct Rotation {
    /// Bumped for each rotation asked for.
    asked: AtomicU64,
    /// Workers that flushed for the latest one.
    flushed: AtomicUsize,
}

/// How long a rotation waits for the workers to flush (they look every housekeeping tick).
const ROTATION_WAIT: Duration = Duration::from_secs(1);

impl Sink {
    pub fn open(path: &str) -> std::io::Result<Arc<Sink>> {
        if path == "-" {
            return Ok(Arc::new(Sink::Stdout));
        }
        Ok(Arc::new(Sink::File {
            file: open_append(path)?,
            path: path.to_string(),
            rotation: Rotation::default(),
        }))
    }

    /// Log rotation (SIGUSR1, after the file was moved away): asks the `workers` to write out
    /// what they buffered (waiting for them up to a second), then opens the log path afresh and
    /// puts the new file in place of the old one. `dup2` swaps the file under the descriptor
    /// every worker already writes to, so nothing is locked; a batch being written at that
    /// moment lands whole in one file or the other.
    /// `Ok(false)`: the log goes to standard output, nothing to reopen.
    pub fn rotate(&self, workers: usize) -> std::io::Result<bool> {
        use std::os::fd::AsRawFd;
        let Sink::File {
            file,
            path,
            rotation,
        } = self
        else {
            return Ok(false);
        };
        rotation.flushed.store(0, Ordering::SeqCst);
        rotation.asked.fetch_add(1, Ordering::SeqCst);
        let until = std::time::Instant::now() + ROTATION_WAIT;
        while rotation.flushed.load(Ordering::SeqCst) < workers && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let fresh = open_append(path)?;
        // SAFETY: both descriptors are open; dup2 replaces `file`'s atomically.
        if unsafe { libc::dup2(fresh.as_raw_fd(), file.as_raw_fd()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(true)
    }

    fn write(&self, bytes: &[u8]) {
        // O_APPEND makes each batch land whole even with several workers writing.
        let _ = match self {
            Sink::Stdout => std::io::stdout().lock().write_all(bytes),
            Sink::File { file, .. } => (&*file).write_all(bytes),
        };
    }
}

fn open_append(path: &str) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// What one line records.
pub struct Entry<'a> {
    pub client: &'a str,
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub status: u16,
    pub bytes: u64,
    pub upstream: Option<std::net::SocketAddr>,
    pub duration: Duration,
}

/// A worker's log buffer.
pub struct AccessLog {
    sink: Option<Arc<Sink>>,
    buf: RefCell<Vec<u8>>,
    /// The last rotation this worker flushed for.
    rotation_seen: Cell<u64>,
}

const FLUSH_AT: usize = 32 * 1024;

impl AccessLog {
    pub fn new(sink: Option<Arc<Sink>>) -> AccessLog {
        AccessLog {
            sink,
            buf: RefCell::new(Vec::with_capacity(FLUSH_AT + 1024)),
            rotation_seen: Cell::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    pub fn log(&self, e: &Entry<'_>) {
        if self.sink.is_none() {
            return;
        }
        let mut b = self.buf.borrow_mut();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        push_timestamp(&mut b, now);
        let _ = write!(b, " {} \"", e.client);
        b.extend_from_slice(e.method);
        b.push(b' ');
        push_escaped(&mut b, e.target);
        let _ = write!(b, "\" {} {} ", e.status, e.bytes);
        match e.upstream {
            Some(a) => {
                let _ = write!(b, "{a}");
            }
            None => b.push(b'-'),
        }
        let _ = writeln!(b, " {}us", e.duration.as_micros());
        if b.len() >= FLUSH_AT {
            self.flush_locked(&mut b);
        }
    }

    /// The line for an answer ringway gave before any request was read (a head that did not
    /// parse, a connection over the limit): no request line (`- -`), no upstream.
    pub fn log_unread(&self, client: &str, status: u16, bytes: u64, duration: Duration) {
        self.log(&Entry {
            client,
            method: b"-",
            target: b"-",
            status,
            bytes,
            upstream: None,
            duration,
        });
    }

    /// Called every housekeeping tick: when a rotation was asked for, writes out the buffered
    /// lines (to the file about to be rotated away) and says so.
    pub fn follow_rotation(&self) {
        if let Some(Sink::File { rotation, .. }) = self.sink.as_deref() {
            let asked = rotation.asked.load(Ordering::SeqCst);
            if asked != self.rotation_seen.get() {
                self.flush();
                self.rotation_seen.set(asked);
                rotation.flushed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Writes buffered lines (called on a timer and at exit).
    pub fn flush(&self) {
        self.flush_locked(&mut self.buf.borrow_mut());
    }

    fn flush_locked(&self, b: &mut Vec<u8>) {
        if let (Some(s), false) = (&self.sink, b.is_empty()) {
            s.write(b);
        }
        b.clear();
    }
}

/// Request targets are client-controlled; keep each log line one line.
fn push_escaped(b: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        if c.is_ascii_graphic() && c != b'"' && c != b'\\' {
            b.push(c);
        } else {
            let _ = write!(b, "\\x{c:02x}");
        }
    }
}

/// `2026-11-26T21:40:14.123Z` (UTC, RFC 3339), without a time-zone database.
fn push_timestamp(b: &mut Vec<u8>, since_epoch: Duration) {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let _ = write!(
        b,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    );
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut b = Vec::new();
        push_timestamp(&mut b, Duration::from_millis(1_795_722_391_245));
        assert_eq!(String::from_utf8(b).unwrap(), "2026-11-26T19:46:31.245Z");
        let mut b = Vec::new();
        push_timestamp(&mut b, Duration::from_secs(951_782_400)); // leap day 2000
        assert_eq!(String::from_utf8(b).unwrap(), "2000-02-29T00:00:00.000Z");
    }
}
