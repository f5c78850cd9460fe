//! Everything the checker knows about the host comes through [`Host`]: files are read under one
//! root path (so tests build fake `/proc` and `/sys` trees), and the few facts that are not files
//! (rlimits, a real ring setup, CPU pinning, NIC statistics) go through [`LiveProbe`], which tests
//! replace.

use std::path::{Path, PathBuf};

/// A soft/hard resource limit pair; `u64::MAX` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

/// Facts that need a syscall rather than a file read.
pub trait LiveProbe {
    fn nofile(&self) -> Option<Limit>;
    fn memlock(&self) -> Option<Limit>;
    /// Sets up (and drops) a small io_uring instance.
    fn uring(&self) -> Result<(), String>;
    /// Pins a short-lived thread to `cpu`, as a worker would be pinned.
    fn pin(&self, cpu: usize) -> Result<(), String>;
    /// `ethtool -S` counters of `iface`, when readable.
    fn nic_stats(&self, iface: &str) -> Option<Vec<(String, u64)>>;
}

/// The running process and kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealProbe;

impl LiveProbe for RealProbe {
    fn nofile(&self) -> Option<Limit> {
        rlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    }
    fn memlock(&self) -> Option<Limit> {
        rlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
    }
    fn uring(&self) -> Result<(), String> {
        uring_probe()
    }
    fn pin(&self, cpu: usize) -> Result<(), String> {
        pin_probe(cpu)
    }
    fn nic_stats(&self, iface: &str) -> Option<Vec<(String, u64)>> {
        ethtool_stats(iface)
    }
}

fn rlimit(r: nix::sys::resource::Resource) -> Option<Limit> {
    let (soft, hard) = nix::sys::resource::getrlimit(r).ok()?;
    Some(Limit { soft, hard })
}

/// The real io_uring probe: sets up an 8-entry ring and submits a NOP, which proves both that
/// `io_uring_setup` is allowed (not disabled by sysctl, seccomp or a container profile) and that
/// `io_uring_enter` works. The server uses it to choose between io_uring and epoll.
pub fn uring_probe() -> Result<(), String> {
    let mut ring = io_uring::IoUring::new(8).map_err(|e| format!("io_uring_setup: {e}"))?;
    let nop = io_uring::opcode::Nop::new().build().user_data(7);
    // SAFETY: a NOP references no buffers.
    unsafe { ring.submission().push(&nop) }.map_err(|e| format!("submission queue: {e}"))?;
    ring.submit_and_wait(1)
        .map_err(|e| format!("io_uring_enter: {e}"))?;
    let cqe = ring.completion().next();
    match cqe {
        Some(c) if c.user_data() == 7 && c.result() >= 0 => Ok(()),
        Some(c) => Err(format!("NOP completed with result {}", c.result())),
        None => Err("NOP produced no completion".into()),
    }
}

/// Pins a scratch thread (never the caller) so the probe leaves the process affinity untouched.
pub fn pin_probe(cpu: usize) -> Result<(), String> {
    std::thread::spawn(move || {
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu).map_err(|e| format!("cpu {cpu}: {e}"))?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
            .map_err(|e| format!("sched_setaffinity(cpu {cpu}): {e}"))
    })
    .join()
    .map_err(|_| "pin probe thread panicked".to_string())?
}

/// Raises the RLIMIT_NOFILE soft limit to the hard limit (allowed without privilege). The
/// server calls this at start so the checker's soft-limit WARN is the only cost of a low default.
pub fn raise_nofile_soft() -> Result<Limit, String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| e.to_string())?;
    Ok(Limit { soft: hard, hard })
}

/// NIC counters through the `ethtool` tool: the ETHTOOL_GSTATS ioctl needs string-set plumbing
/// the tool already does well, and a missing tool simply means "not readable".
fn ethtool_stats(iface: &str) -> Option<Vec<(String, u64)>> {
    let out = std::process::Command::new("ethtool")
        .args(["-S", iface])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(parse_ethtool(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `ethtool -S` output lines of the form `     name: 123`.
pub fn parse_ethtool(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The host as seen through `root` plus a live probe.
pub struct Host {
    root: PathBuf,
    live: Box<dyn LiveProbe>,
}

impl Host {
    pub fn new(root: impl Into<PathBuf>, live: Box<dyn LiveProbe>) -> Host {
        Host {
            root: root.into(),
            live,
        }
    }

    /// The running host under `root` with the real live probe.
    pub fn real(root: impl Into<PathBuf>) -> Host {
        Host::new(root, Box::new(RealProbe))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn live(&self) -> &dyn LiveProbe {
        self.live.as_ref()
    }

    /// `abs` is an absolute host path such as `/proc/sys/fs/nr_open`.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// File contents, trimmed; `None` when missing or unreadable.
    pub fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.path(abs))
            .ok()
            .map(|s| s.trim().to_string())
    }

    pub fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }

    /// A sysctl by its dotted name, whitespace normalised to single spaces.
    pub fn sysctl(&self, name: &str) -> Option<String> {
        let v = self.read(&sysctl_path(name))?;
        Some(v.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// A numeric sysctl; `None` when missing or not a number.
    pub fn sysctl_u64(&self, name: &str) -> Option<u64> {
        self.sysctl(name)?.parse().ok()
    }

    /// The last path component of a symlink's target (a driver name, for instance).
    pub fn link_name(&self, abs: &str) -> Option<String> {
        let target = std::fs::read_link(self.path(abs)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// Entry names of a directory, sorted.
    pub fn list(&self, abs: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(abs))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// `net.core.somaxconn` → `/proc/sys/net/core/somaxconn`.
pub fn sysctl_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// Parses a CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.trim().parse::<usize>().ok()?..=b.trim().parse().ok()?),
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    Some(cpus)
}

/// Parses a kernel release such as `6.18.44-fc-v657` into (major, minor).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0-1103-aws"), Some((5, 4)));
    }

    #[test]
    fn ethtool_output_parses() {
        let s = parse_ethtool(
            "NIC statistics:\n     bw_in_allowance_exceeded: 12\n     tx_timeout: 0\n",
        );
        assert_eq!(s[0], ("bw_in_allowance_exceeded".to_string(), 12));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn real_ring_probe_agrees_with_kernel() {
        // On this project's hosts io_uring is enabled; a failure here names the reason.
        if std::path::Path::new("/proc/sys/kernel/io_uring_disabled").exists()
            && std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .unwrap()
                .trim()
                == "2"
        {
            assert!(uring_probe().is_err());
        } else {
            uring_probe().unwrap();
        }
    }
}
