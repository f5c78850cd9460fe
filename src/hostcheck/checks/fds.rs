//! File descriptors: every connection is an fd, so the per-process limit, its kernel ceiling
//! (fs.nr_open) and the system-wide table (fs.file-max) must all hold the config's demand.

use super::{at_least, Check, Status, GENERIC_FILE, LIMITS_FILE, UNIT_FILE};
use crate::hostcheck::demand::Demand;
use crate::hostcheck::probe::Host;

const G: &str = "fds";
/// What the shipped profiles set; the fix suggests it rather than the bare minimum.
const PROFILE_NOFILE: u64 = 1_048_576;
const PROFILE_NR_OPEN: u64 = 2_097_152;

pub fn checks(host: &Host, d: &Demand) -> Vec<Check> {
    let need = d.fds;
    let fix_nofile = PROFILE_NOFILE.max(need);
    let mut rows = nofile(host, need, fix_nofile);
    rows.push(at_least(
        host,
        G,
        "fs.nr_open",
        need,
        Status::Fail,
        PROFILE_NR_OPEN.max(need),
        GENERIC_FILE,
    ));
    // file-max is shared with every other process, so ask for headroom beyond our own demand.
    rows.push(at_least(
        host,
        G,
        "fs.file-max",
        need,
        Status::Fail,
        2_097_152u64.max(need.saturating_mul(2)),
        GENERIC_FILE,
    ));
    rows
}

fn nofile(host: &Host, need: u64, fix: u64) -> Vec<Check> {
    let fixes = || {
        [
            format!("{UNIT_FILE}: LimitNOFILE={fix}"),
            format!("{LIMITS_FILE}: ringway - nofile {fix}"),
            format!("ulimit -n {fix}  # root shell that starts ringway by hand"),
        ]
    };
    let Some(l) = host.live().nofile() else {
        return vec![Check::unknown(G, "RLIMIT_NOFILE", "getrlimit")
            .required(format!(">= {need}"))
            .fix(fixes())];
    };
    // The hard limit is the ceiling; a low soft limit alone is raised by ringway at start.
    let hard = if l.hard >= need {
        Status::Pass
    } else {
        Status::Fail
    };
    let soft = if l.soft >= need {
        Status::Pass
    } else if l.hard >= need {
        Status::Warn
    } else {
        Status::Fail
    };
    vec![
        Check::new(G, "RLIMIT_NOFILE hard", hard)
            .current(fmt_limit(l.hard))
            .required(format!(">= {need}"))
            .fix(fixes()),
        Check::new(G, "RLIMIT_NOFILE soft", soft)
            .current(fmt_limit(l.soft))
            .required(format!(">= {need}"))
            .fix(fixes()),
    ]
}

pub(crate) fn fmt_limit(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}
