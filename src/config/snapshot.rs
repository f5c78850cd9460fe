//! The validated config: addresses parsed, names resolved to indices, defaults applied.
//! A snapshot is immutable; reload builds a new one and swaps it in.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::model::{AccessLog, RawConfig, MAX_CONNECTIONS};
use super::{ConfigError, HostCheckMode, IoDriver, RelayMode, Workers};

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Where this config came from (file path or `<demo>`).
    pub source: String,
    pub workers: Workers,
    pub io_driver: IoDriver,
    pub ring_entries: u32,
    pub drain_timeout: Duration,
    pub host_check: HostCheckMode,
    pub pipe_size: usize,
    pub limits: LimitsSpec,
    pub access_log: AccessLog,
    pub listeners: Vec<ListenerSpec>,
    pub upstreams: Vec<UpstreamSpec>,
    pub routes: Vec<RouteSpec>,
}

#[derive(Debug, Clone, Copy)]
pub struct LimitsSpec {
    pub max_head_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
    pub max_response_head_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: String,
    pub addr: SocketAddr,
    pub backlog: u32,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub send_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    pub name: String,
    pub servers: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    pub fail_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    /// Lower-cased host to match, without port.
    pub host: Option<String>,
    pub path_prefix: String,
    /// Upper-case method names; `None` allows every method.
    pub methods: Option<Vec<String>>,
    /// Index into [`Snapshot::upstreams`].
    pub upstream: usize,
    pub strip_prefix: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub relay: RelayMode,
    /// Idle limit of an upgraded (101) connection, both directions together.
    pub tunnel_idle_timeout: Duration,
    /// Per-read limit on a streamed response body, after the head.
    pub stream_idle_timeout: Duration,
    /// Lower-cased protocol names a request on this route may switch to.
    pub upgrades: Vec<String>,
}

impl Snapshot {
    pub fn from_raw(raw: RawConfig, file: &str) -> Result<Snapshot, ConfigError> {
        let err = |key: String, message: String| ConfigError {
            file: file.to_string(),
            key,
            line: None,
            message,
        };
        if raw.listeners.is_empty() {
            return Err(err(
                "listeners".into(),
                "expected at least one [[listeners]] table".into(),
            ));
        }
        if !(8..=32768).contains(&raw.ring_entries) {
            return Err(err(
                "ring_entries".into(),
                format!("expected 8..=32768, got {}", raw.ring_entries),
            ));
        }
        // A zero timeout cannot work anywhere it is checked: a zero head or response timeout
        // fails every request, a zero keep-alive closes connections a client may be reusing
        // (dropping the request it just sent), a zero send timeout cuts every write that has
        // to wait, and a zero connect timeout never connects.
        let positive = |key: String, d: Duration, example: &str| {
            if d.is_zero() {
                Err(err(
                    key,
                    format!("expected a positive duration such as \"{example}\", got 0"),
                ))
            } else {
                Ok(())
            }
        };
        let mut listeners: Vec<ListenerSpec> = Vec::with_capacity(raw.listeners.len());
        for (i, l) in raw.listeners.iter().enumerate() {
            let key = |k: &str| format!("listeners[{i}].{k}");
            let addr = parse_service_addr(
                &l.address,
                " (each worker would listen on a different random port)",
            )
            .map_err(|m| err(key("address"), m))?;
            if let Some(j) = listeners.iter().position(|x| x.addr == addr) {
                return Err(err(
                    key("address"),
                    format!(
                        "address {addr} is already used by listeners[{j}]; expected each \
                         listener to have its own address"
                    ),
                ));
            }
            if !(1..=MAX_CONNECTIONS).contains(&l.max_connections) {
                return Err(err(
                    key("max_connections"),
                    format!(
                        "expected 1..={MAX_CONNECTIONS} connections per worker, got {}",
                        l.max_connections
                    ),
                ));
            }
            positive(key("header_timeout"), l.header_timeout.0, "10s")?;
            positive(key("keepalive_timeout"), l.keepalive_timeout.0, "75s")?;
            positive(key("send_timeout"), l.send_timeout.0, "60s")?;
            listeners.push(ListenerSpec {
                name: l.name.clone().unwrap_or_else(|| format!("listener{i}")),
                addr,
                backlog: l.backlog,
                max_connections: l.max_connections,
                header_timeout: l.header_timeout.0,
                keepalive_timeout: l.keepalive_timeout.0,
                send_timeout: l.send_timeout.0,
            });
        }

        let mut upstreams = Vec::with_capacity(raw.upstreams.len());
        for (i, u) in raw.upstreams.iter().enumerate() {
            if u.name.trim().is_empty() {
                return Err(err(
                    format!("upstreams[{i}].name"),
                    format!("expected a non-empty upstream name, got {:?}", u.name),
                ));
            }
            if upstreams.iter().any(|x: &UpstreamSpec| x.name == u.name) {
                return Err(err(
                    format!("upstreams[{i}].name"),
                    format!(
                        "upstream name {:?} is used twice; expected unique names",
                        u.name
                    ),
                ));
            }
            if u.servers.is_empty() {
                return Err(err(
                    format!("upstreams[{i}].servers"),
                    "expected at least one server address".into(),
                ));
            }
            let servers = u
                .servers
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    parse_service_addr(s, "")
                        .map_err(|m| err(format!("upstreams[{i}].servers[{j}]"), m))
                })
                .collect::<Result<Vec<_>, _>>()?;
            positive(
                format!("upstreams[{i}].connect_timeout"),
                u.connect_timeout.0,
                "3s",
            )?;
            positive(
                format!("upstreams[{i}].response_timeout"),
                u.response_timeout.0,
                "30s",
            )?;
            upstreams.push(UpstreamSpec {
                name: u.name.clone(),
                servers,
                connect_timeout: u.connect_timeout.0,
                response_timeout: u.response_timeout.0,
                idle_timeout: u.idle_timeout.0,
                max_idle: u.max_idle,
                fail_timeout: u.fail_timeout.0,
            });
        }

        let mut routes: Vec<RouteSpec> = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.iter().enumerate() {
            let name = r.name.clone().unwrap_or_else(|| format!("route{i}"));
            if let Some(j) = routes.iter().position(|x| x.name == name) {
                // Two defaults never collide, so one of the pair was written by the operator.
                let (at, note) = if r.name.is_some() {
                    (i, "")
                } else {
                    (j, " (a route without a name is called route<index>)")
                };
                return Err(err(
                    format!("routes[{at}].name"),
                    format!(
                        "route name {name:?} is used by routes[{j}] and routes[{i}]; expected \
                         unique names{note}"
                    ),
                ));
            }
            let upstream = upstreams
                .iter()
                .position(|u| u.name == r.upstream)
                .ok_or_else(|| {
                    let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                    err(
                        format!("routes[{i}].upstream"),
                        format!(
                            "no upstream named {:?}; expected one of: {}",
                            r.upstream,
                            if known.is_empty() {
                                "(none defined)".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    )
                })?;
            if !r.path_prefix.starts_with('/') {
                return Err(err(
                    format!("routes[{i}].path_prefix"),
                    format!("expected a path starting with '/', got {:?}", r.path_prefix),
                ));
            }
            if !crate::http::path::is_normal(&r.path_prefix) {
                return Err(err(
                    format!("routes[{i}].path_prefix"),
                    format!(
                        "expected a path in normal form, got {:?}: requests are routed after \
                         their path is normalised (`.` and `..` resolved, slashes merged, \
                         unreserved escapes decoded, hex in upper case) and without their \
                         query, so this prefix could never match",
                        r.path_prefix
                    ),
                ));
            }
            let methods = match &r.methods {
                None => None,
                Some(m) if m.is_empty() => {
                    return Err(err(
                        format!("routes[{i}].methods"),
                        "expected at least one method such as \"GET\" (an empty list would \
                         answer every request with 405); leave `methods` out to allow every \
                         method"
                            .into(),
                    ));
                }
                Some(m) => {
                    for (j, name) in m.iter().enumerate() {
                        if !is_token(name) {
                            return Err(err(
                                format!("routes[{i}].methods[{j}]"),
                                format!(
                                    "expected an HTTP method name such as \"GET\", got {name:?}"
                                ),
                            ));
                        }
                    }
                    Some(m.iter().map(|s| s.to_ascii_uppercase()).collect())
                }
            };
            for (key, d) in [
                ("tunnel_idle_timeout", r.tunnel_idle_timeout.0),
                ("stream_idle_timeout", r.stream_idle_timeout.0),
            ] {
                if d.is_zero() {
                    return Err(err(
                        format!("routes[{i}].{key}"),
                        "expected a positive duration such as \"300s\"".into(),
                    ));
                }
            }
            if let Some(d) = r.connect_timeout {
                positive(format!("routes[{i}].connect_timeout"), d.0, "3s")?;
            }
            if let Some(d) = r.response_timeout {
                positive(format!("routes[{i}].response_timeout"), d.0, "30s")?;
            }
            let host = match &r.host {
                None => None,
                Some(h) => Some(route_host(h).map_err(|m| err(format!("routes[{i}].host"), m))?),
            };
            if let Some(j) = routes
                .iter()
                .position(|x| x.host == host && x.path_prefix == r.path_prefix)
            {
                // The router picks by host and prefix, then checks the method: the second of
                // two such routes could never be chosen.
                return Err(err(
                    format!("routes[{i}].path_prefix"),
                    format!(
                        "routes[{j}] already has host {} and path_prefix {:?}, so this route \
                         could never be chosen (methods do not split routes); expected a \
                         different host or path_prefix, or one route with all the methods",
                        host.as_deref()
                            .map_or("(any)".to_string(), |h| format!("{h:?}")),
                        r.path_prefix
                    ),
                ));
            }
            for (j, p) in r.upgrades.iter().enumerate() {
                if !is_token(p) {
                    return Err(err(
                        format!("routes[{i}].upgrades[{j}]"),
                        format!("expected a protocol name such as \"websocket\", got {p:?}"),
                    ));
                }
            }
            let u = &upstreams[upstream];
            routes.push(RouteSpec {
                name,
                host,
                path_prefix: r.path_prefix.clone(),
                methods,
                upstream,
                strip_prefix: r.strip_prefix,
                connect_timeout: r.connect_timeout.map_or(u.connect_timeout, |d| d.0),
                response_timeout: r.response_timeout.map_or(u.response_timeout, |d| d.0),
                relay: r.relay,
                tunnel_idle_timeout: r.tunnel_idle_timeout.0,
                stream_idle_timeout: r.stream_idle_timeout.0,
                upgrades: r.upgrades.iter().map(|p| p.to_ascii_lowercase()).collect(),
            });
        }

        let l = &raw.limits;
        let limits = LimitsSpec {
            max_head_bytes: l.max_head_bytes.0 as usize,
            max_uri_bytes: l.max_uri_bytes.0 as usize,
            max_headers: l.max_headers,
            max_body_bytes: l.max_body_bytes.0,
            max_response_head_bytes: l.max_response_head_bytes.0 as usize,
        };
        if limits.max_head_bytes < 1024 || limits.max_head_bytes > 1 << 20 {
            return Err(err(
                "limits.max_head_bytes".into(),
                "expected between 1KiB and 1MiB".into(),
            ));
        }
        if limits.max_response_head_bytes < 1024 || limits.max_response_head_bytes > 1 << 20 {
            return Err(err(
                "limits.max_response_head_bytes".into(),
                "expected between 1KiB and 1MiB".into(),
            ));
        }
        // A URI limit above the head limit is harmless (the head limit trips first); one
        // below any real target would answer every request with 414.
        if limits.max_uri_bytes < 64 {
            return Err(err(
                "limits.max_uri_bytes".into(),
                "expected at least 64B (every request target counts against it)".into(),
            ));
        }
        // The parser's header table holds MAX_HEADERS fields; more could never be accepted.
        let most = crate::http::head::MAX_HEADERS;
        if limits.max_headers == 0 || limits.max_headers > most {
            return Err(err(
                "limits.max_headers".into(),
                format!("expected 1..={most} (the most fields a head may have)"),
            ));
        }
        if raw.access_log.enabled && raw.access_log.path != "-" {
            let dir = match Path::new(&raw.access_log.path).parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                return Err(err(
                    "access_log.path".into(),
                    format!(
                        "expected a file in an existing directory; {} does not exist",
                        dir.display()
                    ),
                ));
            }
        }
        Ok(Snapshot {
            source: file.to_string(),
            workers: raw.workers,
            io_driver: raw.io_driver,
            ring_entries: raw.ring_entries,
            drain_timeout: raw.drain_timeout.0,
            host_check: raw.host_check,
            pipe_size: raw.pipe_size.0 as usize,
            limits,
            access_log: raw.access_log,
            listeners,
            upstreams,
            routes,
        })
    }

    /// Worker count once `auto` is resolved against the CPUs this process may run on.
    pub fn worker_count(&self, allowed_cpus: usize) -> usize {
        match self.workers {
            Workers::Auto => allowed_cpus.max(1),
            Workers::Count(n) => n,
        }
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("expected an IP address with port such as \"127.0.0.1:8080\" or \"[::1]:8080\", got {s:?}")
    })
}

/// [`parse_addr`] for an address to listen on or connect to: port 0 is refused (`note` says
/// what it would do there).
fn parse_service_addr(s: &str, note: &str) -> Result<SocketAddr, String> {
    let addr = parse_addr(s)?;
    if addr.port() == 0 {
        return Err(format!(
            "expected a port from 1 to 65535, got 0 in {s:?}{note}"
        ));
    }
    Ok(addr)
}

/// A route's `host` as the router compares it: lower-cased, IPv6 literals in brackets. The router
/// drops the port of the request's Host header before comparing, so a configured host with a
/// port could never match and is refused rather than silently widened to every port.
fn route_host(h: &str) -> Result<String, String> {
    let host = h.to_ascii_lowercase();
    if host.is_empty() {
        return Err(
            "expected a host name such as \"api.example.com\"; leave `host` out to \
                    match any host"
                .into(),
        );
    }
    if host
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/' || b == b'@')
    {
        return Err(format!(
            "expected a bare host name such as \"api.example.com\" (no scheme, path or \
             spaces), got {h:?}"
        ));
    }
    let port_note = "ports are ignored when matching (the request's Host port is not compared)";
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, "")) if ip.parse::<std::net::Ipv6Addr>().is_ok() => Ok(host),
            Some((ip, _)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => Err(format!(
                "expected a host without a port, got {h:?}: {port_note}; write \"[{ip}]\""
            )),
            _ => Err(format!(
                "expected an IPv6 address in brackets such as \"[::1]\", got {h:?}"
            )),
        };
    }
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(format!(
            "expected an IPv6 address in brackets as clients send it in Host, got {h:?}; \
             write \"[{host}]\""
        ));
    }
    if let Some((name, _)) = host.split_once(':') {
        return Err(format!(
            "expected a host without a port, got {h:?}: {port_note}; write \"{name}\""
        ));
    }
    if host.contains('*') {
        return Err(format!(
            "expected an exact host name, got {h:?}: wildcards are not supported (leave \
             `host` out to match any host)"
        ));
    }
    // The router ignores a request Host's trailing dot (the root label); so does a route's.
    match host.strip_suffix('.') {
        Some("") => Err(format!("expected a host name, got {h:?}")),
        Some(name) => Ok(name.to_string()),
        None => Ok(host),
    }
}

/// Shared holder of the current snapshot. Workers keep their own `Arc` and only look here when
/// the generation counter moved, so the request path reads one relaxed atomic, never the lock.
#[derive(Debug)]
pub struct SnapshotHandle {
    current: Mutex<Arc<Snapshot>>,
    generation: AtomicU64,
}

impl SnapshotHandle {
    pub fn new(s: Snapshot) -> Arc<Self> {
        Arc::new(SnapshotHandle {
            current: Mutex::new(Arc::new(s)),
            generation: AtomicU64::new(0),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs a new snapshot; connections accepted afterwards use it.
    pub fn swap(&self, s: Snapshot) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// A token (RFC 9110 §5.6.2): what method names and protocol names are made of.
fn is_token(s: &str) -> bool {
    let tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    !s.is_empty() && s.bytes().all(tchar)
}
