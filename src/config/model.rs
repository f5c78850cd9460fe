//! The TOML file as written by the operator. Every struct denies unknown keys so a typo is an
//! error naming the key, not a silently ignored setting.

use serde::Deserialize;

use super::units::{ByteSize, Duration};

/// Top level of a ringway config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `"auto"` (one worker per allowed CPU) or a count.
    #[serde(default)]
    pub workers: Workers,
    /// `"auto"` tries io_uring and falls back to epoll; `"io_uring"` / `"epoll"` force one.
    #[serde(default)]
    pub io_driver: IoDriver,
    /// Submission queue entries of each worker's ring.
    #[serde(default = "defaults::ring_entries")]
    pub ring_entries: u32,
    /// How long in-flight requests may run after SIGTERM before workers exit.
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: Duration,
    /// What a FAIL from the host checker does at start: stop (`enforce`), log (`warn`) or skip (`off`).
    #[serde(default)]
    pub host_check: HostCheckMode,
    /// Size of the per-worker splice pipes (F_SETPIPE_SZ).
    #[serde(default = "defaults::pipe_size")]
    pub pipe_size: ByteSize,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub access_log: AccessLog,
    pub listeners: Vec<Listener>,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
}

/// Upper bound of `workers = N`: each worker is a pinned thread with its own ring, pools and
/// buffers, so more workers than any real machine has CPUs is a typo, not a setting.
pub const MAX_WORKERS: usize = 1024;

/// Upper bound of a listener's `max_connections` (per worker): fd and port arithmetic in
/// `ringway check` stays far from overflow, and no single worker can hold more anyway.
pub const MAX_CONNECTIONS: usize = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workers {
    #[default]
    Auto,
    Count(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoDriver {
    #[default]
    Auto,
    IoUring,
    Epoll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostCheckMode {
    #[default]
    Enforce,
    Warn,
    Off,
}

/// Request limits; exceeding one gives the client its 4xx and closes the connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Request line plus headers (431 above it).
    pub max_head_bytes: ByteSize,
    /// Request target length (414 above it).
    pub max_uri_bytes: ByteSize,
    /// Header field count (431 above it).
    pub max_headers: usize,
    /// Request body size (413 above it).
    pub max_body_bytes: ByteSize,
    /// Upstream response head size (502 above it).
    pub max_response_head_bytes: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: ByteSize(16 * 1024),
            max_uri_bytes: ByteSize(8 * 1024),
            max_headers: 100,
            max_body_bytes: ByteSize(1 << 30),
            max_response_head_bytes: ByteSize(32 * 1024),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    pub enabled: bool,
    /// `"-"` for standard output, else a file path (appended to).
    pub path: String,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            enabled: true,
            path: "-".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    #[serde(default)]
    pub name: Option<String>,
    /// `ip:port`; IPv6 as `[::1]:8080`.
    pub address: String,
    #[serde(default = "defaults::backlog")]
    pub backlog: u32,
    /// Open client connections per worker; above it new connections get a 503 and are closed.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Time a client has to send a complete request head.
    #[serde(default = "defaults::header_timeout")]
    pub header_timeout: Duration,
    /// How long an idle keep-alive client connection is kept.
    #[serde(default = "defaults::keepalive_timeout")]
    pub keepalive_timeout: Duration,
    /// A client that takes nothing of a response for this long is disconnected (counted from
    /// the last byte it took, so a slow reader that keeps reading is never cut).
    #[serde(default = "defaults::send_timeout")]
    pub send_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub name: String,
    /// `ip:port` of each server; requests go round-robin.
    pub servers: Vec<String>,
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: Duration,
    /// Time to wait for each read from the server, response head included.
    #[serde(default = "defaults::response_timeout")]
    pub response_timeout: Duration,
    /// Pooled connections idle longer than this are closed.
    #[serde(default = "defaults::upstream_idle_timeout")]
    pub idle_timeout: Duration,
    /// Idle keep-alive connections kept per worker (per server).
    #[serde(default = "defaults::max_idle")]
    pub max_idle: usize,
    /// A server whose connect failed is skipped this long (while another server is up).
    #[serde(default = "defaults::fail_timeout")]
    pub fail_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub name: Option<String>,
    /// Matches the Host header (port ignored); absent matches any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Matches requests whose path starts with this (segment-wise for prefixes without trailing `/`).
    #[serde(default = "defaults::path_prefix")]
    pub path_prefix: String,
    /// Allowed methods; absent allows all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    pub upstream: String,
    /// Remove `path_prefix` from the path before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Overrides the upstream's connect timeout for this route.
    #[serde(default)]
    pub connect_timeout: Option<Duration>,
    /// Overrides the upstream's response timeout for this route.
    #[serde(default)]
    pub response_timeout: Option<Duration>,
    /// Body relay: `auto` (splice when nothing reads the body), `splice` or `copy`.
    #[serde(default)]
    pub relay: RelayMode,
    /// An upgraded connection (WebSocket) with no bytes either way for this long is closed.
    #[serde(default = "defaults::tunnel_idle_timeout")]
    pub tunnel_idle_timeout: Duration,
    /// A streamed response (event stream, chunked or close-delimited body) whose upstream
    /// sends nothing for this long is cut; replaces `response_timeout` once the head is in.
    #[serde(default = "defaults::stream_idle_timeout")]
    pub stream_idle_timeout: Duration,
    /// Protocols a request may switch to (`Upgrade`); any other Upgrade is not forwarded.
    #[serde(default = "defaults::upgrades")]
    pub upgrades: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayMode {
    #[default]
    Auto,
    Splice,
    Copy,
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum W {
            N(i64),
            S(String),
        }
        let want = format!("expected \"auto\" or a worker count from 1 to {MAX_WORKERS}");
        match W::deserialize(d).map_err(|_| serde::de::Error::custom(&want))? {
            W::N(n) if (1..=MAX_WORKERS as i64).contains(&n) => Ok(Workers::Count(n as usize)),
            W::S(s) if s == "auto" => Ok(Workers::Auto),
            W::N(n) => Err(serde::de::Error::custom(format!("{want}, got {n}"))),
            W::S(s) => Err(serde::de::Error::custom(format!("{want}, got {s:?}"))),
        }
    }
}

mod defaults {
    use super::{ByteSize, Duration};
    pub fn ring_entries() -> u32 {
        1024
    }
    pub fn drain_timeout() -> Duration {
        Duration::from_secs(10)
    }
    /// 64 KiB (the kernel's default pipe) measured cheapest per MiB for 1 MiB bodies and as
    /// cheap as larger pipes for 16 MiB ones (benches/body/README.md).
    pub fn pipe_size() -> ByteSize {
        ByteSize(64 << 10)
    }
    pub fn backlog() -> u32 {
        4096
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn header_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn keepalive_timeout() -> Duration {
        Duration::from_secs(75)
    }
    pub fn send_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(3)
    }
    pub fn response_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn upstream_idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn fail_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_idle() -> usize {
        64
    }
    pub fn tunnel_idle_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn stream_idle_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn path_prefix() -> String {
        "/".into()
    }
    /// WebSocket only: an `h2c` (or other) upgrade through a gateway would hand the client a
    /// raw tunnel past every route and policy (h2c smuggling).
    pub fn upgrades() -> Vec<String> {
        vec!["websocket".into()]
    }
}
