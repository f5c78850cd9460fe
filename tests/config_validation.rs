//! `ringway validate -c FILE` refuses configs that would parse but fail at run time (overflowing
//! durations and connection counts, zero timeouts, port 0, duplicates, hosts with ports), naming
//! the file, the key, the line and what was expected; and `ringway check` offers one reserved
//! ports value that covers every listen port in the ephemeral range.

mod fakehost;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use fakehost::{FakeLive, FakeRoot};
use ringway::config::load_str;
use ringway::hostcheck::{run_checks, Host, Status};
use ringway::proxy::router::Router;

/// A valid config with every key the cases change on a line of its own (line numbers below).
const BASE: &str = r#"workers = 2
drain_timeout = "10s"

[[listeners]]
address = "127.0.0.1:8080"
max_connections = 1000
header_timeout = "10s"
keepalive_timeout = "75s"
send_timeout = "60s"

[[upstreams]]
name = "be"
servers = ["127.0.0.1:9000"]
connect_timeout = "3s"
response_timeout = "30s"

[[routes]]
name = "api"
host = "api.example.com"
path_prefix = "/api"
methods = ["GET", "POST"]
upstream = "be"
"#;

/// A config file in a fresh temp dir (removed with the returned guard).
struct TempConfig {
    dir: PathBuf,
    path: PathBuf,
}

impl TempConfig {
    fn new(text: &str) -> TempConfig {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringway-validate-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ringway.toml");
        std::fs::write(&path, text).unwrap();
        TempConfig { dir, path }
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn validate(text: &str) -> (TempConfig, Output) {
    let cfg = TempConfig::new(text);
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("validate")
        .arg("-c")
        .arg(&cfg.path)
        .output()
        .expect("run ringway validate");
    (cfg, out)
}

/// `text` must be refused with a message naming the file, `key`, `line` and containing `want`.
fn refused(text: &str, key: &str, line: usize, want: &str) {
    let (cfg, out) = validate(text);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "not refused ({key}):\n{err}\n{text}"
    );
    let head = format!(
        "config error in {} at `{key}` (line {line}): ",
        cfg.path.display()
    );
    assert!(err.contains(&head), "want {head:?}\ngot {err}");
    assert!(err.contains(want), "want {want:?}\ngot {err}");
}

fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn base_config_is_valid() {
    let (_cfg, out) = validate(BASE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
}

#[test]
fn durations_above_30_days_are_refused() {
    let huge = "\"4000000000000000h\"";
    let want = "expected a duration of at most 30 days (\"720h\"), got \"4000000000000000h\"";
    refused(
        &replace("\"30s\"", huge),
        "upstreams[0].response_timeout",
        15,
        want,
    );
    refused(
        &replace(
            "drain_timeout = \"10s\"",
            &format!("drain_timeout = {huge}"),
        ),
        "drain_timeout",
        2,
        want,
    );
    refused(
        &replace("header_timeout = \"10s\"", "header_timeout = 2592001"),
        "listeners[0].header_timeout",
        7,
        "at most 30 days",
    );
    refused(
        &format!("{BASE}stream_idle_timeout = \"721h\"\n"),
        "routes[0].stream_idle_timeout",
        23,
        "at most 30 days",
    );
    // The bound itself is accepted.
    let (_cfg, out) = validate(&replace("\"30s\"", "\"720h\""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn max_connections_and_workers_are_bounded() {
    refused(
        &replace("1000", "9223372036854775807"),
        "listeners[0].max_connections",
        6,
        "expected 1..=10000000 connections per worker, got 9223372036854775807",
    );
    // Past 64 bits the TOML parser itself refuses the number, before any key is known.
    refused(
        &replace("1000", "99999999999999999999"),
        "listeners[0].max_connections",
        6,
        "too large",
    );
    refused(
        &replace("1000", "10000001"),
        "listeners[0].max_connections",
        6,
        "expected 1..=10000000",
    );
    refused(
        &replace("workers = 2", "workers = 1025"),
        "workers",
        1,
        "expected \"auto\" or a worker count from 1 to 1024, got 1025",
    );
    let (_cfg, out) = validate(&replace("workers = 2", "workers = 1024"));
    assert!(out.status.success());
}

/// The overflow reached `ringway check` before: now the config is refused with its message and
/// exit 1, not a panic (debug) or a wrapped fd sum that PASSes (release).
/// The parser's header table holds 256 fields: a larger `max_headers` could never be honoured.
#[test]
fn max_headers_above_the_parser_table_is_refused() {
    refused(
        &replace(
            "drain_timeout = \"10s\"",
            "drain_timeout = \"10s\"\nlimits = { max_headers = 500 }",
        ),
        "limits.max_headers",
        3,
        "expected 1..=256",
    );
}

#[test]
fn check_refuses_overflowing_max_connections() {
    let root = FakeRoot::good("overflow");
    let cfg = TempConfig::new(&replace("1000", "9223372036854775807"));
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "-c"])
        .arg(&cfg.path)
        .arg("--root")
        .arg(root.root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("listeners[0].max_connections") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn zero_timeouts_that_cannot_work_are_refused() {
    let cases = [
        (
            "header_timeout = \"10s\"",
            "header_timeout = \"0s\"",
            "listeners[0].header_timeout",
            7,
        ),
        (
            "keepalive_timeout = \"75s\"",
            "keepalive_timeout = 0",
            "listeners[0].keepalive_timeout",
            8,
        ),
        (
            "send_timeout = \"60s\"",
            "send_timeout = \"0ms\"",
            "listeners[0].send_timeout",
            9,
        ),
        (
            "connect_timeout = \"3s\"",
            "connect_timeout = \"0s\"",
            "upstreams[0].connect_timeout",
            14,
        ),
        (
            "response_timeout = \"30s\"",
            "response_timeout = \"0s\"",
            "upstreams[0].response_timeout",
            15,
        ),
    ];
    for (from, to, key, line) in cases {
        refused(
            &replace(from, to),
            key,
            line,
            "expected a positive duration",
        );
    }
    // Route overrides too.
    refused(
        &format!("{BASE}connect_timeout = \"0s\"\n"),
        "routes[0].connect_timeout",
        23,
        "expected a positive duration",
    );
    refused(
        &format!("{BASE}response_timeout = \"0ms\"\n"),
        "routes[0].response_timeout",
        23,
        "expected a positive duration",
    );
}

#[test]
fn duplicate_and_empty_names_are_refused() {
    refused(
        &format!("{BASE}\n[[routes]]\nname = \"api\"\nupstream = \"be\"\n"),
        "routes[1].name",
        25,
        "route name \"api\" is used by routes[0] and routes[1]; expected unique names",
    );
    // An explicit name equal to another route's default name.
    refused(
        &format!("{BASE}\n[[routes]]\nupstream = \"be\"\n[[routes]]\nname = \"route1\"\nupstream = \"be\"\n"),
        "routes[2].name",
        27,
        "expected unique names",
    );
    // … written first: the error points at the written name and explains the default.
    refused(
        &format!(
            "{}\n[[routes]]\nupstream = \"be\"\n",
            replace("name = \"api\"", "name = \"route1\"")
        ),
        "routes[0].name",
        18,
        "expected unique names (a route without a name is called route<index>)",
    );
    refused(
        &replace("name = \"be\"", "name = \"\""),
        "upstreams[0].name",
        12,
        "expected a non-empty upstream name",
    );
}

#[test]
fn empty_methods_are_refused() {
    refused(
        &replace("[\"GET\", \"POST\"]", "[]"),
        "routes[0].methods",
        21,
        "expected at least one method",
    );
}

/// Methods are tokens (RFC 9110 §9.1): registered ones such as VERSION-CONTROL carry a '-';
/// what is not a token is refused.
#[test]
fn methods_are_tokens() {
    let (_cfg, out) = validate(&replace(
        "[\"GET\", \"POST\"]",
        "[\"GET\", \"VERSION-CONTROL\", \"M-SEARCH\"]",
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    refused(
        &replace("[\"GET\", \"POST\"]", "[\"GET\", \"PO ST\"]"),
        "routes[0].methods[1]",
        21,
        "expected an HTTP method name",
    );
}

#[test]
fn port_zero_and_duplicate_listeners_are_refused() {
    refused(
        &replace("127.0.0.1:8080", "127.0.0.1:0"),
        "listeners[0].address",
        5,
        "expected a port from 1 to 65535, got 0",
    );
    refused(
        &replace("127.0.0.1:9000", "127.0.0.1:0"),
        "upstreams[0].servers[0]",
        13,
        "expected a port from 1 to 65535, got 0",
    );
    refused(
        &format!("{BASE}\n[[listeners]]\naddress = \"127.0.0.1:8080\"\n"),
        "listeners[1].address",
        25,
        "address 127.0.0.1:8080 is already used by listeners[0]",
    );
    // The same address spelt differently is still the same address.
    let text = replace("127.0.0.1:8080", "[::1]:8080");
    refused(
        &format!("{text}\n[[listeners]]\naddress = \"[0:0::1]:8080\"\n"),
        "listeners[1].address",
        25,
        "already used by listeners[0]",
    );
}

#[test]
fn route_hosts_with_ports_are_refused() {
    refused(
        &replace("api.example.com", "Example.com:8080"),
        "routes[0].host",
        19,
        "ports are ignored when matching (the request's Host port is not compared); write \"example.com\"",
    );
    refused(
        &replace("\"api.example.com\"", "\"[::1]:8080\""),
        "routes[0].host",
        19,
        "write \"[::1]\"",
    );
    refused(
        &replace("\"api.example.com\"", "\"::1\""),
        "routes[0].host",
        19,
        "write \"[::1]\"",
    );
    refused(
        &replace("\"api.example.com\"", "\"\""),
        "routes[0].host",
        19,
        "leave `host` out to match any host",
    );
}

#[test]
fn route_hosts_are_normalised_and_match_with_any_port() {
    let s = load_str(&replace("api.example.com", "API.Example.COM"), "t.toml").unwrap();
    assert_eq!(s.routes[0].host.as_deref(), Some("api.example.com"));
    let r = Router::new(&s.routes);
    assert_eq!(r.find(b"api.example.com:8080", b"/api/x", b"GET"), Ok(0));
    assert_eq!(r.find(b"Api.Example.com", b"/api", b"POST"), Ok(0));
    let s = load_str(&replace("\"api.example.com\"", "\"[::1]\""), "t.toml").unwrap();
    let r = Router::new(&s.routes);
    assert_eq!(r.find(b"[::1]:8080", b"/api", b"GET"), Ok(0));
}

/// Two listen ports inside the ephemeral range: every FAIL row gives the same single value,
/// holding both ports, what the host reserves now and what the shipped profile reserves.
#[test]
fn reserved_ports_fix_covers_every_listen_port() {
    let root = FakeRoot::good("reserved");
    root.sysctl("net.ipv4.ip_local_reserved_ports", "443,9000-9002");
    let text = format!(
        "{}\n[[listeners]]\naddress = \"127.0.0.1:40001\"\n",
        replace("127.0.0.1:8080", "127.0.0.1:40000")
    );
    let cfg = load_str(&text, "t.toml").unwrap();
    let report = run_checks(&Host::new(root.root(), Box::new(FakeLive::default())), &cfg);
    let value = "80,443,8080,8443,9000-9002,40000-40001";
    for port in [40000, 40001] {
        let name = format!("listen port {port} vs ephemeral range");
        let row = report
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no row {name}\n{}", report.to_text()));
        assert_eq!(row.status, Status::Fail, "{}", report.to_text());
        assert_eq!(
            row.fix,
            [
                format!("sysctl -w net.ipv4.ip_local_reserved_ports=\"{value}\""),
                format!(
                    "tuning/sysctl.d/60-ringway.conf: net.ipv4.ip_local_reserved_ports = {value}"
                ),
            ],
            "{}",
            report.to_text()
        );
    }
}

#[test]
fn unreachable_routes_and_unusable_limits_are_refused() {
    // Same host and prefix as routes[0]: the router would never choose it, whatever its methods.
    refused(
        &format!(
            "{BASE}\n[[routes]]\nname = \"api-delete\"\nhost = \"API.example.com\"\n\
             path_prefix = \"/api\"\nmethods = [\"DELETE\"]\nupstream = \"be\"\n"
        ),
        "routes[1].path_prefix",
        27,
        "routes[0] already has host \"api.example.com\" and path_prefix \"/api\"",
    );
    // Another host, or another prefix, is a different route.
    for other in [
        "host = \"www.example.com\"\npath_prefix = \"/api\"",
        "host = \"api.example.com\"\npath_prefix = \"/api/v2\"",
    ] {
        let (_cfg, out) = validate(&format!(
            "{BASE}\n[[routes]]\nname = \"b\"\n{other}\nupstream = \"be\"\n"
        ));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A URI limit below any real target (0 made every request a 414).
    for v in ["0", "\"63B\""] {
        refused(
            &replace(
                "drain_timeout = \"10s\"",
                &format!("drain_timeout = \"10s\"\nlimits = {{ max_uri_bytes = {v} }}"),
            ),
            "limits.max_uri_bytes",
            3,
            "expected at least 64B",
        );
    }
    // An access log in a directory that does not exist fails `run`; `validate` says so first.
    refused(
        &replace(
            "drain_timeout = \"10s\"",
            "drain_timeout = \"10s\"\naccess_log = { path = \"/nonexistent-ringway-dir/access.log\" }",
        ),
        "access_log.path",
        3,
        "/nonexistent-ringway-dir does not exist",
    );
}

/// Routes that could never match are refused: a `path_prefix` that is not in normal form
/// (requests are routed after normalisation and without their query) and wildcard hosts (not
/// supported); a host's trailing dot is dropped, as the router drops a request Host's.
#[test]
fn prefixes_and_hosts_that_never_match_are_refused() {
    for prefix in [
        "/a/../b",
        "//s",
        "/q?x=1",
        "/%61pi",
        "/caf%c3%a9",
        "/a/.",
        "/a b",
        "/a\tb",
        "/caf\u{e9}",
    ] {
        refused(
            &replace(
                "path_prefix = \"/api\"",
                &format!("path_prefix = {prefix:?}"),
            ),
            "routes[0].path_prefix",
            20,
            "expected a path in normal form",
        );
    }
    refused(
        &replace("host = \"api.example.com\"", "host = \"*.example.com\""),
        "routes[0].host",
        19,
        "wildcards are not supported",
    );
    let snap = load_str(
        &replace("host = \"api.example.com\"", "host = \"API.example.com.\""),
        "t.toml",
    )
    .unwrap();
    let router = Router::new(&snap.routes);
    assert!(router.find(b"api.example.com", b"/api/x", b"GET").is_ok());
    assert!(router.find(b"api.example.com.", b"/api/x", b"GET").is_ok());
}
