//! `ringway check [-c FILE] [--format text|json]`.

use std::path::PathBuf;

use anyhow::Context;

use super::{default_root, run_checks, Host};
use crate::config::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Check this host against what the config needs.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Config file; without it the checks assume a default single-listener config.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Read /proc and /sys under this root instead of / (tests; default $RINGWAY_HOST_ROOT or /).
    #[arg(long, hide = true, value_name = "PATH")]
    pub root: Option<PathBuf>,
}

/// A single listener on :8080 proxying to one upstream server, defaults for everything else: the
/// smallest config that still has both sides of a proxied connection.
pub const DEFAULT_CONFIG: &str = r#"
routes = []
[[listeners]]
address = "0.0.0.0:8080"
[[upstreams]]
name = "default"
servers = ["127.0.0.1:9000"]
"#;

impl CheckArgs {
    /// Prints the report; returns 0 when nothing fails, 1 otherwise.
    pub fn run(self) -> anyhow::Result<i32> {
        let snapshot = load_config(self.config.as_deref())?;
        let host = Host::real(self.root.unwrap_or_else(default_root));
        let report = run_checks(&host, &snapshot);
        match self.format {
            Format::Text => print!("{}", report.to_text()),
            Format::Json => println!("{}", report.to_json()),
        }
        Ok(report.exit_code())
    }
}

/// The given config, or [`DEFAULT_CONFIG`].
pub fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Snapshot> {
    match path {
        Some(p) => crate::config::load_file(p).with_context(|| format!("loading {}", p.display())),
        None => Ok(crate::config::load_str(DEFAULT_CONFIG, "<default config>")?),
    }
}
