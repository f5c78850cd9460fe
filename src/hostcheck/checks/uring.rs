//! io_uring: whether a ring can be set up here, what it costs in locked memory on old kernels,
//! and which driver `ringway run` will therefore use.

use super::fds::fmt_limit;
use super::{Check, Status, GENERIC_FILE, LIMITS_FILE, UNIT_FILE};
use crate::config::{IoDriver, Snapshot};
use crate::hostcheck::demand::Demand;
use crate::hostcheck::probe::{kernel_version, Host};

const G: &str = "io_uring";
/// DEFER_TASKRUN (6.1) is what makes io_uring cheaper than epoll here (design notes).
const GOOD_KERNEL: (u32, u32) = (6, 1);
/// Oldest kernel with the networking opcodes monoio uses.
const MIN_KERNEL: (u32, u32) = (5, 6);
/// From 5.12 on, ring memory is charged to the memory cgroup instead of RLIMIT_MEMLOCK.
const MEMLOCK_UNTIL: (u32, u32) = (5, 12);

pub fn checks(host: &Host, s: &Snapshot, d: &Demand) -> Vec<Check> {
    let kernel = host.read("/proc/sys/kernel/osrelease");
    let version = kernel.as_deref().and_then(kernel_version);
    // Where io_uring is required, anything that stops it is a FAIL; with auto it is a fallback.
    let short = if s.io_driver == IoDriver::IoUring {
        Status::Fail
    } else {
        Status::Warn
    };
    let probe = host.live().uring();
    vec![
        kernel_row(kernel.as_deref(), version, short),
        disabled_row(host, version, short),
        probe_row(&probe, short),
        memlock_row(host, version, s, d),
        driver_row(s.io_driver, &probe),
    ]
}

fn kernel_row(release: Option<&str>, v: Option<(u32, u32)>, short: Status) -> Check {
    let name = "kernel version";
    let Some(v) = v else {
        return Check::unknown(G, name, "/proc/sys/kernel/osrelease");
    };
    let status = if v >= GOOD_KERNEL {
        Status::Pass
    } else if v >= MIN_KERNEL {
        Status::Warn
    } else {
        short
    };
    Check::new(G, name, status)
        .current(release.unwrap_or_default())
        .required(">= 6.1 (DEFER_TASKRUN); >= 5.6 works, slower")
        .fix([
            "upgrade the kernel to 6.1 or newer (e.g. a current distribution kernel)".to_string(),
        ])
}

fn disabled_row(host: &Host, v: Option<(u32, u32)>, short: Status) -> Check {
    let name = "kernel.io_uring_disabled";
    match host.sysctl_u64(name) {
        Some(0) => Check::new(G, name, Status::Pass).current(0).required("0"),
        Some(n) => Check::new(G, name, short)
            .current(n)
            .required("0 (1 allows only io_uring_group, 2 disables io_uring)")
            .sysctl_fix(name, "0", GENERIC_FILE),
        // The knob appeared in 6.6; before that io_uring cannot be switched off this way.
        None if v.is_some_and(|v| v < (6, 6)) => Check::new(G, name, Status::Pass)
            .current("absent (kernel < 6.6)")
            .required("0"),
        None => Check::unknown(G, name, "/proc/sys/kernel/io_uring_disabled").sysctl_fix(
            name,
            "0",
            GENERIC_FILE,
        ),
    }
}

fn probe_row(probe: &Result<(), String>, short: Status) -> Check {
    let name = "ring setup probe";
    match probe {
        Ok(()) => Check::new(G, name, Status::Pass).current("ring set up, NOP completed").required("ring setup works"),
        Err(e) => Check::new(G, name, short).current(e).required("ring setup works").fix([
            "sysctl -w kernel.io_uring_disabled=0".to_string(),
            format!("{UNIT_FILE}: SystemCallFilter= must allow io_uring_setup io_uring_enter io_uring_register"),
            "container: allow io_uring in the seccomp profile (docker --security-opt seccomp=...)".to_string(),
        ]),
    }
}

/// Bytes one ring locks: SQ entries (64 B) and indexes (4 B), CQ twice as long (16 B each),
/// rounded up to pages, plus a page of ring headers.
fn ring_bytes(entries: u64) -> u64 {
    let raw = entries * (64 + 4) + 2 * entries * 16;
    raw.div_ceil(4096) * 4096 + 4096
}

fn memlock_row(host: &Host, v: Option<(u32, u32)>, s: &Snapshot, d: &Demand) -> Check {
    let name = "RLIMIT_MEMLOCK (rings)";
    if v.is_some_and(|v| v >= MEMLOCK_UNTIL) {
        return Check::new(G, name, Status::Pass)
            .current("not charged (kernel >= 5.12)")
            .required("-");
    }
    let need = d.workers.saturating_mul(ring_bytes(s.ring_entries as u64));
    let fixes = [
        format!("{UNIT_FILE}: LimitMEMLOCK=64M"),
        format!("{LIMITS_FILE}: ringway - memlock 65536"),
    ];
    let Some(l) = host.live().memlock() else {
        return Check::unknown(G, name, "getrlimit")
            .required(format!(">= {need}"))
            .fix(fixes);
    };
    let status = if l.soft >= need {
        Status::Pass
    } else {
        Status::Warn
    };
    Check::new(G, name, status)
        .current(fmt_limit(l.soft))
        .required(format!(
            ">= {need} ({} rings x {} B)",
            d.workers,
            ring_bytes(s.ring_entries as u64)
        ))
        .fix(fixes)
}

fn driver_row(cfg: IoDriver, probe: &Result<(), String>) -> Check {
    let name = "driver `run` will use";
    let (status, current) = match (cfg, probe) {
        (IoDriver::Epoll, _) => (Status::Pass, "epoll (io_driver = \"epoll\")"),
        (_, Ok(())) => (Status::Pass, "io_uring"),
        (IoDriver::Auto, Err(_)) => (Status::Warn, "epoll (io_uring unavailable, auto fallback)"),
        (IoDriver::IoUring, Err(_)) => (
            Status::Fail,
            "none (io_driver = \"io_uring\" but io_uring unavailable)",
        ),
    };
    Check::new(G, name, status)
        .current(current)
        .required("io_uring, or epoll by choice")
        .fix([
            "fix the ring setup probe above, or set io_driver = \"epoll\" in the config"
                .to_string(),
        ])
}
