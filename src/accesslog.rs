//! One access-log line per request, buffered per worker and written in batches, so logging
//! costs no syscall per request.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where lines go; shared by workers, touched only on flush.
pub enum Sink {
    Stdout,
    File(File),
}

impl Sink {
    pub fn open(path: &str) -> std::io::Result<Arc<Sink>> {
        if path == "-" {
            return Ok(Arc::new(Sink::Stdout));
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Arc::new(Sink::File(f)))
    }

    fn write(&self, bytes: &[u8]) {
        // O_APPEND makes each batch land whole even with several workers writing.
        let _ = match self {
            Sink::Stdout => std::io::stdout().lock().write_all(bytes),
            Sink::File(f) => (&*f).write_all(bytes),
        };
    }
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
}

const FLUSH_AT: usize = 32 * 1024;

impl AccessLog {
    pub fn new(sink: Option<Arc<Sink>>) -> AccessLog {
        AccessLog {
            sink,
            buf: RefCell::new(Vec::with_capacity(FLUSH_AT + 1024)),
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
        let _ = write!(
            b,
            "{}.{:03} {} \"",
            now.as_secs(),
            now.subsec_millis(),
            e.client
        );
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
