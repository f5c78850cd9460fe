//! Configuration: the TOML model ([`model`]), human units ([`units`]), and the validated,
//! immutable [`Snapshot`] that workers read. Errors always name the file, the key and what was
//! expected; a reload swaps the snapshot through a [`SnapshotHandle`].

mod locate;
pub mod model;
pub mod units;

mod snapshot;

pub use model::{HostCheckMode, IoDriver, RawConfig, RelayMode, Workers};
pub use snapshot::{LimitsSpec, ListenerSpec, RouteSpec, Snapshot, SnapshotHandle, UpstreamSpec};

use std::fmt;
use std::path::Path;

/// A config problem, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Dotted key path such as `routes[0].upstream`; empty for file-level problems.
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error in {}", self.file)?;
        if !self.key.is_empty() {
            write!(f, " at `{}`", self.key)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads, parses and validates a config file.
pub fn load_file(path: &Path) -> Result<Snapshot, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        key: String::new(),
        line: None,
        message: format!("cannot read the file: {e}"),
    })?;
    load_str(&text, &file)
}

/// Parses and validates config text; `file` names it in errors.
pub fn load_str(text: &str, file: &str) -> Result<Snapshot, ConfigError> {
    let raw = parse(text, file)?;
    Snapshot::from_raw(raw, file).map_err(|mut e| {
        if e.line.is_none() {
            e.line = locate::line_of(text, &e.key);
        }
        e
    })
}

fn parse(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        // Errors in the TOML syntax itself come before any key; the line still tells it.
        let key = match key.as_str() {
            "." => line
                .and_then(|l| locate::key_at_line(text, l))
                .unwrap_or_default(),
            _ => key,
        };
        ConfigError {
            file: file.to_string(),
            key,
            line,
            message: inner.message().trim().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
workers = 2
[[listeners]]
address = "127.0.0.1:8080"
[[upstreams]]
name = "be"
servers = ["127.0.0.1:9000"]
[[routes]]
path_prefix = "/api"
upstream = "be"
strip_prefix = true
response_timeout = "250ms"
"#;

    #[test]
    fn good_config_loads() {
        let s = load_str(GOOD, "good.toml").unwrap();
        assert_eq!(s.workers, Workers::Count(2));
        assert_eq!(s.routes[0].upstream, 0);
        assert_eq!(
            s.routes[0].response_timeout,
            std::time::Duration::from_millis(250)
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = GOOD.replace("strip_prefix = true", "strip_prefx = true");
        let e = load_str(&text, "bad.toml").unwrap_err();
        assert_eq!(e.file, "bad.toml");
        assert!(e.key.starts_with("routes[0]"), "{e}");
        assert!(e.message.contains("strip_prefx"), "{e}");
        assert_eq!(e.line, Some(11), "{e}");
    }

    #[test]
    fn integer_too_large_names_key_and_line() {
        let text = GOOD.replace("workers = 2", "workers = 99999999999999999999");
        let e = load_str(&text, "bad.toml").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("workers", Some(2)), "{e}");
        let text = GOOD.replace(
            "address = \"127.0.0.1:8080\"",
            "address = \"127.0.0.1:8080\"\nmax_connections = 99999999999999999999",
        );
        let e = load_str(&text, "bad.toml").unwrap_err();
        assert_eq!(e.key, "listeners[0].max_connections", "{e}");
        assert!(e.message.contains("too large"), "{e}");
    }

    #[test]
    fn bad_duration_names_key() {
        let text = GOOD.replace("\"250ms\"", "\"soon\"");
        let e = load_str(&text, "bad.toml").unwrap_err();
        assert_eq!(e.key, "routes[0].response_timeout", "{e}");
        assert!(e.message.contains("expected a duration"), "{e}");
    }

    #[test]
    fn unknown_upstream_is_named() {
        let text = GOOD.replace("upstream = \"be\"", "upstream = \"nope\"");
        let e = load_str(&text, "bad.toml").unwrap_err();
        assert_eq!(e.key, "routes[0].upstream");
        assert!(
            e.message.contains("nope") && e.message.contains("be"),
            "{e}"
        );
    }

    #[test]
    fn stream_timeouts_default_and_validate() {
        let s = load_str(GOOD, "good.toml").unwrap();
        let five_min = std::time::Duration::from_secs(300);
        assert_eq!(s.routes[0].tunnel_idle_timeout, five_min);
        assert_eq!(s.routes[0].stream_idle_timeout, five_min);
        let text = GOOD.replace(
            "strip_prefix = true",
            "tunnel_idle_timeout = \"2s\"\nstream_idle_timeout = \"90s\"",
        );
        let s = load_str(&text, "t.toml").unwrap();
        assert_eq!(s.routes[0].tunnel_idle_timeout.as_secs(), 2);
        assert_eq!(s.routes[0].stream_idle_timeout.as_secs(), 90);
        let text = GOOD.replace("strip_prefix = true", "stream_idle_timeout = \"0s\"");
        let e = load_str(&text, "t.toml").unwrap_err();
        assert_eq!(e.key, "routes[0].stream_idle_timeout", "{e}");
    }

    /// The error for `text`, which must fail validation.
    fn fails(text: &str) -> ConfigError {
        load_str(text, "bad.toml").expect_err("config should be refused")
    }

    #[test]
    fn semantic_errors_carry_the_line() {
        let e = fails(&GOOD.replace("upstream = \"be\"", "upstream = \"nope\""));
        assert_eq!(
            (e.key.as_str(), e.line),
            ("routes[0].upstream", Some(10)),
            "{e}"
        );
        assert!(e.to_string().contains("(line 10)"), "{e}");
        let e = fails(&GOOD.replace("127.0.0.1:9000", "localhost"));
        assert_eq!(e.line, Some(7), "{e}");
        // The second of several servers, on a line of its own.
        let e = fails(&GOOD.replace(
            "[\"127.0.0.1:9000\"]",
            "[\n  \"127.0.0.1:9000\",\n  \"127.0.0.1:0\",\n]",
        ));
        assert_eq!(
            (e.key.as_str(), e.line),
            ("upstreams[0].servers[1]", Some(9)),
            "{e}"
        );
        // A name written twice is reported where it is written the second time.
        let text = format!("{GOOD}[[routes]]\nname = \"route0\"\nupstream = \"be\"\n");
        let e = fails(&text);
        assert_eq!(
            (e.key.as_str(), e.line),
            ("routes[1].name", Some(14)),
            "{e}"
        );
        // A key that is not written points at its table's header.
        assert_eq!(locate::line_of(GOOD, "routes[0].name"), Some(8));
        assert_eq!(locate::line_of(GOOD, "routes[3].name"), Some(8));
        // Inline tables and dotted top-level keys.
        let e = fails(&GOOD.replace("workers = 2", "limits = { max_headers = 0 }"));
        assert_eq!(
            (e.key.as_str(), e.line),
            ("limits.max_headers", Some(2)),
            "{e}"
        );
        // Nothing to point at: no line rather than a wrong one.
        assert_eq!(locate::line_of(GOOD, "nope.x"), None);
        let e = fails("routes = []\nupstreams = []\nlisteners = []\n");
        assert_eq!((e.key.as_str(), e.line), ("listeners", Some(3)), "{e}");
    }

    #[test]
    fn bad_address_is_named() {
        let text = GOOD.replace("127.0.0.1:9000", "localhost");
        let e = load_str(&text, "bad.toml").unwrap_err();
        assert_eq!(e.key, "upstreams[0].servers[0]");
    }
}
