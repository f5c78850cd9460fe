//! CPUs: thread-per-core wants one worker per CPU this process may run on, and each worker pinned.
//! Allowed CPUs are the affinity mask (`Cpus_allowed_list`) intersected with the cgroup v2 cpuset.

use super::{Check, Status};
use crate::hostcheck::demand::Demand;
use crate::hostcheck::probe::{parse_cpu_list, Host};

const G: &str = "cpu";

/// CPUs the process may run on, or `None` when the affinity mask is unreadable.
pub fn allowed_cpus(host: &Host) -> Option<Vec<usize>> {
    let status = host.read("/proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    let mut cpus = parse_cpu_list(line)?;
    if let Some(set) = cgroup_cpuset(host) {
        cpus.retain(|c| set.contains(c));
    }
    Some(cpus)
}

/// The effective cpuset of this process's cgroup v2 group, when there is one.
fn cgroup_cpuset(host: &Host) -> Option<Vec<usize>> {
    let cg = host.read("/proc/self/cgroup")?;
    let path = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    let file = format!(
        "/sys/fs/cgroup{}/cpuset.cpus.effective",
        path.trim_end_matches('/')
    );
    parse_cpu_list(&host.read(&file)?).filter(|v| !v.is_empty())
}

pub fn checks(host: &Host, d: &Demand, cpus: Option<&[usize]>) -> Vec<Check> {
    let Some(cpus) = cpus else {
        return vec![Check::unknown(
            G,
            "workers vs allowed CPUs",
            "/proc/self/status Cpus_allowed_list",
        )
        .fix(["mount procfs at /proc (and do not set ProcSubset=pid in the unit)".to_string()])];
    };
    let n = cpus.len() as u64;
    let status = if d.workers <= n {
        Status::Pass
    } else {
        Status::Warn
    };
    let workers = Check::new(G, "workers vs allowed CPUs", status)
        .current(format!(
            "{} workers on {n} CPUs ({})",
            d.workers,
            list(cpus)
        ))
        .required(format!("workers <= {n}"))
        .fix([
            "config: workers = \"auto\"".to_string(),
            "systemctl set-property ringway.service AllowedCPUs=<more CPUs>".to_string(),
        ]);
    vec![workers, pinning(host, cpus, d.workers as usize)]
}

/// Tries to pin a scratch thread to each CPU a worker would get.
fn pinning(host: &Host, cpus: &[usize], workers: usize) -> Check {
    let name = "worker pinning";
    let failed: Vec<String> = cpus
        .iter()
        .take(workers.max(1))
        .filter_map(|&c| host.live().pin(c).err())
        .collect();
    if failed.is_empty() {
        return Check::new(G, name, Status::Pass)
            .current(format!(
                "pinned to {}",
                list(&cpus[..workers.min(cpus.len())])
            ))
            .required("sched_setaffinity works");
    }
    Check::new(G, name, Status::Warn)
        .current(failed.join("; "))
        .required("sched_setaffinity works")
        .fix([
            "allow sched_setaffinity (seccomp profile / SystemCallFilter=@resources)".to_string(),
        ])
}

fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
