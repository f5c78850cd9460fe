//! Support shared by the integration tests: free ports, a gateway process
//! under test, config builders, and a raw HTTP/1.1 client that never hangs.
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Each blocking read gives up after this long.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole response must arrive within this long, however slowly it trickles.
pub const RESPONSE_DEADLINE: Duration = Duration::from_secs(60);
/// How long a gateway may take to start accepting.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback port that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A unique scratch directory for one test's files.
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "ringway-test-{tag}-{}-{n}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

// ---------------------------------------------------------------- configs

/// A minimal valid gateway config: one listener on `listen_port`, one upstream
/// `backend`, one route `/`. `extra` lands at the top level (before the first table).
pub fn config(listen_port: u16, backend: SocketAddr, extra: &str) -> String {
    config_with(listen_port, backend, extra, "", "")
}

/// Like [`config`], plus keys appended inside the `[[upstreams]]` and
/// `[[routes]]` tables. Extra tables can follow `route_extra` (they come last).
pub fn config_with(
    listen_port: u16,
    backend: SocketAddr,
    top: &str,
    upstream_extra: &str,
    route_extra: &str,
) -> String {
    format!(
        "workers = 1\nhost_check = \"off\"\n{top}\n\
         [[listeners]]\naddress = \"127.0.0.1:{listen_port}\"\n\n\
         [[upstreams]]\nname = \"backend\"\nservers = [\"{backend}\"]\n{upstream_extra}\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"backend\"\n{route_extra}\n"
    )
}

/// The first `address = "..."` in a config: where the gateway will listen.
pub fn first_address(config_toml: &str) -> Option<SocketAddr> {
    config_toml.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if key.trim() != "address" {
            return None;
        }
        value.trim().trim_matches('"').parse().ok()
    })
}

// ---------------------------------------------------------------- gateway process

/// A `ringway run` child process; killed (by its pid) when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
    log_path: PathBuf,
}

impl Gateway {
    /// Starts the gateway and waits until it accepts; panics with its log otherwise.
    pub fn start(config_toml: &str) -> Gateway {
        Self::try_start(config_toml).unwrap_or_else(|log| panic!("gateway did not start:\n{log}"))
    }

    /// Like [`Gateway::start`] but returns the log instead of panicking
    /// (for tests that expect a config to be refused).
    pub fn try_start(config_toml: &str) -> Result<Gateway, String> {
        let addr = first_address(config_toml).expect("config has an `address = \"...\"` line");
        let mut gateway = Self::spawn(config_toml, addr);
        match gateway.wait_listening() {
            Ok(()) => Ok(gateway),
            Err(why) => Err(format!("{why}\n--- log ---\n{}", gateway.log())),
        }
    }

    /// Starts the gateway with at most `nofile` file descriptors (RLIMIT_NOFILE).
    pub fn start_limited(config_toml: &str, nofile: u64) -> Gateway {
        let addr = first_address(config_toml).expect("config has an `address = \"...\"` line");
        let mut gateway = Self::spawn_with(config_toml, addr, Some(nofile));
        if let Err(why) = gateway.wait_listening() {
            panic!(
                "gateway did not start: {why}\n--- log ---\n{}",
                gateway.log()
            );
        }
        gateway
    }

    fn spawn(config_toml: &str, addr: SocketAddr) -> Gateway {
        Self::spawn_with(config_toml, addr, None)
    }

    fn spawn_with(config_toml: &str, addr: SocketAddr, nofile: Option<u64>) -> Gateway {
        let dir = temp_dir("gw");
        let config_path = dir.join("ringway.toml");
        std::fs::write(&config_path, config_toml).expect("write config");
        let log_path = dir.join("gateway.log");
        let log = std::fs::File::create(&log_path).expect("create log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringway"));
        cmd.arg("run")
            .arg("-c")
            .arg(&config_path)
            .env_remove("RINGWAY_HOST_ROOT")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd.spawn().expect("spawn ringway");
        Gateway {
            addr,
            child,
            dir,
            log_path,
        }
    }

    /// Polls (bounded by START_TIMEOUT) until the listener accepts a TCP connection.
    fn wait_listening(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("gateway exited early: {status}"));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "gateway not accepting on {} after {START_TIMEOUT:?}",
            self.addr
        ))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the gateway wrote to stdout and stderr so far.
    /// Where the running gateway's config file is (rewrite it, then SIGHUP to reload).
    #[allow(dead_code)]
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("ringway.toml")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn sigterm(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal gateway");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if started.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A client connection to the gateway's listener.
    pub fn conn(&self) -> Conn {
        Conn::connect(self.addr)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // Keep the log of a failing test for a post-mortem.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("gateway log kept at {}", self.log_path.display());
        }
    }
}

// ---------------------------------------------------------------- raw HTTP client

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// Decoded body (chunked framing removed).
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
}

impl Response {
    /// First value of a header, name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("body is UTF-8")
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    }
}

/// Writes all of `bytes` to the stream.
/// True if the peer of `stream` closed (EOF or reset) within `wait`; bytes that arrive meanwhile
/// are appended to `buf`. The stream's read timeout is back at READ_TIMEOUT afterwards.
pub fn closed_within(stream: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> bool {
    let started = Instant::now();
    let closed = loop {
        let left = wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            break false;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true,
        }
    };
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    closed
}

pub fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).expect("send request bytes");
}

/// Reads one response from a bare stream. Bytes after it are lost: use [`Conn`]
/// for pipelining or several requests on one connection.
pub fn read_response(stream: &mut TcpStream) -> Response {
    let clone = stream.try_clone().expect("clone stream");
    Conn::new(clone).read_response()
}

/// A client connection with its own read buffer, so pipelined responses
/// can be read one after another.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Conn::new(stream)
    }

    pub fn new(stream: TcpStream) -> Conn {
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .expect("write timeout");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        send(&mut self.stream, raw);
    }

    /// Sends a raw request and reads its final response (1xx interim responses
    /// other than 101 are skipped; a request starting with `HEAD ` expects no body).
    pub fn request(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        let head = raw.starts_with(b"HEAD ");
        loop {
            let resp = if head {
                self.read_response_for_head()
            } else {
                self.read_response()
            };
            if resp.status >= 200 || resp.status == 101 {
                return resp;
            }
        }
    }

    /// The next response on the connection, 1xx included, body framed by its headers.
    pub fn read_response(&mut self) -> Response {
        self.read_one(false)
    }

    /// The next response to a HEAD request: headers only, whatever they announce.
    pub fn read_response_for_head(&mut self) -> Response {
        self.read_one(true)
    }

    /// Bytes received but not yet part of a returned response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads until the peer closes (or the deadline); returns whatever came, buffered bytes first.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + RESPONSE_DEADLINE;
        while self.fill(deadline).unwrap_or(0) > 0 {}
        std::mem::take(&mut self.buf)
    }

    /// True if the peer closed (EOF or reset) within `wait`; bytes that arrive meanwhile are buffered.
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        closed_within(&mut self.stream, &mut self.buf, wait)
    }

    fn read_one(&mut self, head_only: bool) -> Response {
        let deadline = Instant::now() + RESPONSE_DEADLINE;
        let mut resp = self.read_head(deadline);
        let no_body = head_only
            || (100..200).contains(&resp.status)
            || resp.status == 204
            || resp.status == 304;
        if no_body {
            return resp;
        }
        if resp.is_chunked() {
            self.read_chunked(&mut resp, deadline);
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.trim().parse().expect("numeric Content-Length");
            resp.body = self.take_exact(len, deadline);
        } else {
            resp.body = self.read_to_close();
        }
        resp
    }

    /// One read into the buffer; Ok(0) is EOF. Panics past the deadline.
    fn fill(&mut self, deadline: Instant) -> std::io::Result<usize> {
        assert!(
            Instant::now() < deadline,
            "response not complete within {RESPONSE_DEADLINE:?}"
        );
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn fill_or_panic(&mut self, deadline: Instant, what: &str) {
        match self.fill(deadline) {
            Ok(0) => panic!(
                "connection closed while reading {what}; got {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(_) => {}
            Err(e) => panic!(
                "reading {what}: {e}; got {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    fn read_head(&mut self, deadline: Instant) -> Response {
        loop {
            if let Some((len, resp)) = parse_head(&self.buf) {
                self.buf.drain(..len);
                return resp;
            }
            self.fill_or_panic(deadline, "a response head");
        }
    }

    fn take_exact(&mut self, len: usize, deadline: Instant) -> Vec<u8> {
        while self.buf.len() < len {
            self.fill_or_panic(deadline, "a response body");
        }
        self.buf.drain(..len).collect()
    }

    /// A CRLF-terminated line, without its terminator.
    fn line(&mut self, deadline: Instant) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return line;
            }
            self.fill_or_panic(deadline, "a chunked body line");
        }
    }

    fn read_chunked(&mut self, resp: &mut Response, deadline: Instant) {
        loop {
            let line = self.line(deadline);
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                break;
            }
            let data = self.take_exact(size, deadline);
            resp.body.extend_from_slice(&data);
            let end = self.take_exact(2, deadline);
            assert_eq!(end, b"\r\n", "chunk data not followed by CRLF");
        }
        loop {
            let line = self.line(deadline);
            if line.is_empty() {
                return;
            }
            let (name, value) = line.split_once(':').expect("trailer field has a colon");
            resp.trailers
                .push((name.trim().to_string(), value.trim().to_string()));
        }
    }
}

/// Parses a complete response head at the start of `buf`: (head length, response without body).
fn parse_head(buf: &[u8]) -> Option<(usize, Response)> {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return None,
        Err(e) => panic!(
            "bad response head ({e}): {:?}",
            String::from_utf8_lossy(buf)
        ),
    };
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let resp = Response {
        status: parsed.code.expect("status code"),
        reason: parsed.reason.unwrap_or("").to_string(),
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
    };
    Some((len, resp))
}

// ---------------------------------------------------------------- curl

/// Runs the real `curl` (silent but showing errors, 30 s cap) with `args` appended.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl")
}

// ---------------------------------------------------------------- scripted raw upstream

/// A scripted upstream on a std `TcpListener`: each accepted connection runs `script` in its
/// own thread with its index (0-based). Stops accepting when dropped.
pub struct RawUpstream {
    pub addr: SocketAddr,
    pub accepted: std::sync::Arc<AtomicU64>,
    /// Request heads read by [`RawUpstream::read_head`] across all connections.
    pub requests: std::sync::Arc<AtomicU64>,
    /// Connections whose script returned true ([`RawUpstream::start_counting`]).
    noted: std::sync::Arc<AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a raw upstream script gets for each connection.
pub struct RawConn {
    pub stream: TcpStream,
    pub index: u64,
    requests: std::sync::Arc<AtomicU64>,
    buf: Vec<u8>,
}

impl RawConn {
    /// The same buffered reading over any stream, such as a client's reading its responses
    /// (heads read through it are counted nowhere).
    pub fn over(stream: TcpStream) -> RawConn {
        RawConn {
            stream,
            index: 0,
            requests: Default::default(),
            buf: Vec::new(),
        }
    }

    /// Reads one request head (through CRLFCRLF); None on EOF, error or timeout.
    /// Counts it in the upstream's `requests`.
    pub fn read_head(&mut self) -> Option<String> {
        let deadline = Instant::now() + READ_TIMEOUT;
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                self.requests.fetch_add(1, Ordering::SeqCst);
                return Some(String::from_utf8_lossy(&head).into_owned());
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads exactly `n` body bytes (after a head); None if the peer closed first.
    pub fn read_body(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// One CRLF-terminated line (without CRLF); None if the peer closed first.
    pub fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Some(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
    }

    /// Reads and decodes a chunked body (trailers skipped); None on close or bad framing.
    pub fn read_chunked_body(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&self.read_body(size)?);
            if self.read_body(2)? != b"\r\n" {
                return None;
            }
        }
        while !self.read_line()?.is_empty() {}
        Some(body)
    }

    /// True once the peer closes the connection (within `wait`).
    pub fn wait_closed(&mut self, wait: Duration) -> bool {
        closed_within(&mut self.stream, &mut self.buf, wait)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }
}

impl RawUpstream {
    /// A raw upstream answering every request on a connection with `answer`, keeping the
    /// connection open for the next.
    pub fn answering_each(answer: &'static [u8]) -> RawUpstream {
        RawUpstream::start(move |mut c| {
            while c.read_head().is_some() {
                c.write(answer);
            }
        })
    }

    pub fn start<F>(script: F) -> RawUpstream
    where
        F: Fn(RawConn) + Send + Sync + 'static,
    {
        RawUpstream::start_counting(move |c| {
            script(c);
            false
        })
    }

    /// Like [`RawUpstream::start`], counting the connections whose script returns true (for
    /// instance, that it saw the gateway let go of it): [`RawUpstream::noted`].
    pub fn start_counting<F>(script: F) -> RawUpstream
    where
        F: Fn(RawConn) -> bool + Send + Sync + 'static,
    {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind raw upstream");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let noted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        let (acc, req, st, seen) = (
            accepted.clone(),
            requests.clone(),
            stop.clone(),
            noted.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).expect("blocking");
                        stream
                            .set_read_timeout(Some(READ_TIMEOUT))
                            .expect("timeout");
                        stream
                            .set_write_timeout(Some(READ_TIMEOUT))
                            .expect("timeout");
                        let index = acc.fetch_add(1, Ordering::SeqCst);
                        let conn = RawConn {
                            stream,
                            index,
                            requests: req.clone(),
                            buf: Vec::new(),
                        };
                        let (script, seen) = (script.clone(), seen.clone());
                        std::thread::spawn(move || {
                            if script(conn) {
                                seen.fetch_add(1, Ordering::SeqCst);
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RawUpstream {
            addr,
            accepted,
            requests,
            noted,
            stop,
            thread: Some(thread),
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Connections whose script returned true, so far.
    pub fn noted(&self) -> u64 {
        self.noted.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- small helpers

/// Reads one request head off `s` byte by byte (nothing past it); false if the peer closed
/// or the read failed first.
pub fn read_request_head(s: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// The built-in backend with default options.
pub fn backend() -> ringway::backend::Backend {
    ringway::backend::Backend::start(ringway::backend::BackendOptions::default())
        .expect("start backend")
}

/// A gateway in front of `upstream` with the default test config plus `top`.
pub fn gateway_for(upstream: SocketAddr, top: &str) -> Gateway {
    Gateway::start(&config(free_port(), upstream, top))
}

/// A GET request for `path` with Host `t`.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// Encodes `body` as chunked in pieces of `piece` bytes.
pub fn chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(piece.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Polls `cond` every 20 ms until it holds or `limit` has passed; its last answer. For what a
/// gateway does in its own time (a sweep, a flushed log line, an upstream it lets go).
pub fn wait_until(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let until = Instant::now() + limit;
    while !cond() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Writes `bytes` from a separate thread (so a big upload cannot deadlock against the reader).
pub fn send_in_thread(stream: &TcpStream, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut s = stream.try_clone().expect("clone stream");
    std::thread::spawn(move || {
        let _ = s.write_all(&bytes);
    })
}
