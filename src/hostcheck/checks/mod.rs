//! The checks. Each submodule owns one area and returns rows; [`run_all`] computes what the config
//! needs ([`Demand`]) once and hands it to every area.

mod conntrack;
mod cpu;
mod ec2;
mod fds;
mod ports;
mod splice;
mod tcp;
mod uring;

use serde::Serialize;

use super::demand::Demand;
use super::probe::Host;
use crate::config::Snapshot;

/// The profile files a fix line points at.
pub const GENERIC_FILE: &str = "tuning/sysctl.d/60-ringway.conf";
pub const EC2_FILE: &str = "tuning/sysctl.d/61-ringway-ec2.conf";
pub const LIMITS_FILE: &str = "tuning/limits.d/ringway.conf";
pub const UNIT_FILE: &str = "systemd/ringway.service";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Area such as `fds` or `tcp`.
    pub group: &'static str,
    /// Stable name such as `fs.nr_open`; tests and JSON consumers key on it.
    pub name: String,
    pub status: Status,
    pub current: String,
    pub required: String,
    /// Exact commands or file lines that fix a WARN or FAIL; empty for PASS.
    pub fix: Vec<String>,
}

impl Check {
    pub fn new(group: &'static str, name: impl Into<String>, status: Status) -> Check {
        Check {
            group,
            name: name.into(),
            status,
            current: String::new(),
            required: String::new(),
            fix: Vec::new(),
        }
    }
    pub fn current(mut self, v: impl ToString) -> Check {
        self.current = v.to_string();
        self
    }
    pub fn required(mut self, v: impl ToString) -> Check {
        self.required = v.to_string();
        self
    }
    /// Fixes only matter when something is wrong; PASS rows keep theirs empty.
    pub fn fix(mut self, lines: impl IntoIterator<Item = String>) -> Check {
        if self.status != Status::Pass {
            self.fix.extend(lines);
        }
        self
    }
    /// The usual fix for a sysctl: the live command and the profile line.
    pub fn sysctl_fix(self, name: &str, value: &str, file: &str) -> Check {
        self.fix([
            format!("sysctl -w {name}=\"{value}\""),
            format!("{file}: {name} = {value}"),
        ])
    }
    /// A missing probe: WARN with "unknown", never a crash.
    pub fn unknown(group: &'static str, name: impl Into<String>, what: &str) -> Check {
        let c =
            Check::new(group, name, Status::Warn).current(format!("unknown ({what} not readable)"));
        if what.starts_with('/') {
            // Files only go missing when procfs/sysfs are not mounted or the sandbox hides them.
            c.fix([format!(
                "make {what} readable: procfs on /proc, sysfs on /sys, no ProcSubset=pid"
            )])
        } else {
            c
        }
    }
}

/// Every row for `snapshot` on `host`, in table order.
pub fn run_all(host: &Host, snapshot: &Snapshot) -> (Demand, Vec<Check>) {
    let cpus = cpu::allowed_cpus(host);
    let demand = Demand::compute(snapshot, cpus.as_ref().map_or(1, |c| c.len()));
    let mut rows = Vec::new();
    rows.extend(fds::checks(host, &demand));
    rows.extend(ports::checks(host, snapshot, &demand));
    rows.extend(tcp::checks(host, snapshot));
    rows.extend(uring::checks(host, snapshot, &demand));
    rows.extend(cpu::checks(host, &demand, cpus.as_deref()));
    rows.extend(splice::checks(host, snapshot));
    rows.extend(conntrack::checks(host, &demand));
    rows.extend(ec2::checks(host));
    (demand, rows)
}

/// A numeric sysctl compared with a minimum; missing → WARN unknown.
pub(crate) fn at_least(
    host: &Host,
    group: &'static str,
    name: &str,
    min: u64,
    short: Status,
    fix_value: u64,
    file: &str,
) -> Check {
    let Some(v) = host.sysctl_u64(name) else {
        return Check::unknown(group, name, &super::probe::sysctl_path(name))
            .required(format!(">= {min}"))
            .sysctl_fix(name, &fix_value.to_string(), file);
    };
    let status = if v >= min { Status::Pass } else { short };
    Check::new(group, name, status)
        .current(v)
        .required(format!(">= {min}"))
        .sysctl_fix(name, &fix_value.to_string(), file)
}
