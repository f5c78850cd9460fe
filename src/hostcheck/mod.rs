//! Host readiness: can this machine carry the load the config asks for?
//!
//! - [`probe`]: the root-path reader ([`probe::Host`]) and the live-probe trait (rlimits, a real
//!   io_uring setup, CPU pinning, NIC counters) that tests replace.
//! - [`demand`]: what the config needs (fds, ports, backlog, tracked connections), with its sums.
//! - [`checks`]: one file per area, each returning PASS/WARN/FAIL rows with exact fixes.
//! - [`report`]: text table and JSON.
//! - [`profile`] and [`tune`]: the shipped `tuning/` files (embedded) and `ringway tune`.
//! - [`cli`]: `ringway check` arguments; [`startup_check`] is what `ringway run` calls.

pub mod checks;
pub mod cli;
pub mod demand;
pub mod probe;
pub mod profile;
pub mod report;
pub mod tune;

use std::path::{Path, PathBuf};

pub use checks::{Check, Status};
pub use cli::CheckArgs;
pub use probe::{uring_probe, Host, LiveProbe, RealProbe};
pub use report::Report;
pub use tune::TuneArgs;

use crate::config::{HostCheckMode, Snapshot};

/// Env var naming the root to read the host from (tests point it at a fake tree).
pub const ROOT_ENV: &str = "RINGWAY_HOST_ROOT";

/// `RINGWAY_HOST_ROOT` when set and non-empty, else `/`.
pub fn default_root() -> PathBuf {
    std::env::var_os(ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Runs every check for `snapshot` against `host`.
pub fn run_checks(host: &Host, snapshot: &Snapshot) -> Report {
    let (demand, checks) = checks::run_all(host, snapshot);
    Report {
        root: host.root().display().to_string(),
        config: snapshot.source.clone(),
        demand,
        checks,
    }
}

/// The start-up gate of `ringway run`: WARNs are logged; FAILs stop the start with the rendered
/// table under `host_check = "enforce"`, are logged under `"warn"`; `"off"` skips the checks.
pub fn startup_check(snapshot: &Snapshot, root: &Path) -> Result<(), String> {
    if snapshot.host_check == HostCheckMode::Off {
        return Ok(());
    }
    let report = run_checks(&Host::real(root), snapshot);
    gate(&report, snapshot.host_check)
}

/// The decision part of [`startup_check`], separate so tests can feed a report from a fake probe.
pub fn gate(report: &Report, mode: HostCheckMode) -> Result<(), String> {
    for c in report.checks.iter().filter(|c| c.status == Status::Warn) {
        tracing::warn!(check = %c.name, current = %c.current, required = %c.required, fix = ?c.fix, "host check WARN");
    }
    if !report.has_fail() || mode == HostCheckMode::Off {
        return Ok(());
    }
    if mode == HostCheckMode::Enforce {
        let fails: Vec<Check> = report
            .checks
            .iter()
            .filter(|c| c.status != Status::Pass)
            .cloned()
            .collect();
        let header = "ringway: host check failed; not starting (set host_check = \"warn\" in the config to start anyway)\n";
        return Err(report::render_rows(&fails, header));
    }
    for c in report.checks.iter().filter(|c| c.status == Status::Fail) {
        tracing::warn!(check = %c.name, current = %c.current, required = %c.required, fix = ?c.fix,
            "host check FAIL ignored (host_check = \"warn\")");
    }
    Ok(())
}
