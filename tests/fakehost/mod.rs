//! Fake hosts for the checker tests: a temp directory laid out like `/proc` and `/sys`, and a
//! live probe whose answers the test chooses.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ringway::hostcheck::probe::{Limit, LiveProbe};

/// A good host: 4 CPUs, kernel 6.8, every sysctl at or beyond the shipped profile.
pub const GOOD: &[(&str, &str)] = &[
    ("kernel.osrelease", "6.8.0-1015-generic"),
    ("kernel.io_uring_disabled", "0"),
    ("fs.nr_open", "2097152"),
    ("fs.file-max", "2097152"),
    ("fs.pipe-max-size", "16777216"),
    ("net.core.somaxconn", "65535"),
    ("net.core.rmem_max", "67108864"),
    ("net.core.wmem_max", "67108864"),
    ("net.ipv4.tcp_max_syn_backlog", "65535"),
    ("net.ipv4.ip_local_port_range", "1024\t65535"),
    ("net.ipv4.ip_local_reserved_ports", "80,443,8080,8443"),
    ("net.ipv4.tcp_fin_timeout", "30"),
    ("net.ipv4.tcp_tw_reuse", "1"),
    ("net.ipv4.tcp_syncookies", "1"),
    ("net.ipv4.tcp_mtu_probing", "0"),
    ("net.netfilter.nf_conntrack_max", "1048576"),
];

/// Stock Debian-like values (this project's dev machine), before any profile is applied.
pub const STOCK: &[(&str, &str)] = &[
    ("kernel.osrelease", "6.1.0-27-amd64"),
    ("kernel.io_uring_disabled", "0"),
    ("fs.nr_open", "1048576"),
    ("fs.file-max", "9223372036854775807"),
    ("fs.pipe-max-size", "1048576"),
    ("net.core.somaxconn", "4096"),
    ("net.core.rmem_max", "212992"),
    ("net.core.wmem_max", "212992"),
    ("net.core.rmem_default", "212992"),
    ("net.core.wmem_default", "212992"),
    ("net.core.netdev_max_backlog", "1000"),
    ("net.core.netdev_budget", "300"),
    ("net.ipv4.tcp_max_syn_backlog", "2048"),
    ("net.ipv4.ip_local_port_range", "32768\t60999"),
    ("net.ipv4.ip_local_reserved_ports", ""),
    ("net.ipv4.tcp_fin_timeout", "60"),
    ("net.ipv4.tcp_tw_reuse", "2"),
    ("net.ipv4.tcp_syncookies", "1"),
    ("net.ipv4.tcp_rmem", "4096\t131072\t6291456"),
    ("net.ipv4.tcp_wmem", "4096\t16384\t4194304"),
    ("net.ipv4.tcp_slow_start_after_idle", "1"),
    ("net.ipv4.tcp_mtu_probing", "0"),
    ("net.ipv4.tcp_keepalive_time", "7200"),
    ("net.ipv4.tcp_keepalive_intvl", "75"),
    ("net.ipv4.tcp_keepalive_probes", "9"),
    ("net.netfilter.nf_conntrack_max", "262144"),
];

/// A fake root directory, removed on drop.
pub struct FakeRoot {
    pub dir: PathBuf,
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl FakeRoot {
    /// An empty root under the temp dir with a name unique to this process and call.
    pub fn empty(tag: &str) -> FakeRoot {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringway-hostcheck-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        FakeRoot { dir }
    }

    /// A host with `sysctls`, CPUs 0-3 (affinity and cgroup cpuset), conntrack loaded, no DMI.
    pub fn with(tag: &str, sysctls: &[(&str, &str)]) -> FakeRoot {
        let r = FakeRoot::empty(tag);
        for (k, v) in sysctls {
            r.sysctl(k, v);
        }
        r.cpus("0-3");
        r.write("/proc/self/cgroup", "0::/system.slice/ringway.service\n");
        r.write(
            "/sys/fs/cgroup/system.slice/ringway.service/cpuset.cpus.effective",
            "0-3\n",
        );
        std::fs::create_dir_all(r.path("/sys/module/nf_conntrack")).unwrap();
        r
    }

    pub fn good(tag: &str) -> FakeRoot {
        FakeRoot::with(tag, GOOD)
    }

    pub fn path(&self, abs: &str) -> PathBuf {
        self.dir.join(abs.trim_start_matches('/'))
    }

    pub fn write(&self, abs: &str, text: &str) {
        let p = self.path(abs);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn remove(&self, abs: &str) {
        let p = self.path(abs);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    pub fn sysctl(&self, name: &str, value: &str) {
        self.write(
            &format!("/proc/sys/{}", name.replace('.', "/")),
            &format!("{value}\n"),
        );
    }

    pub fn cpus(&self, list: &str) {
        self.write(
            "/proc/self/status",
            &format!("Name:\tringway\nCpus_allowed:\tf\nCpus_allowed_list:\t{list}\n"),
        );
    }

    /// Turns the host into an EC2 Nitro instance with an ENA eth0 at MTU 9001 and MTU probing on.
    pub fn make_ec2(&self, driver: &str) {
        self.write("/sys/class/dmi/id/sys_vendor", "Amazon EC2\n");
        self.write("/sys/class/dmi/id/product_name", "c6i.large\n");
        self.write(
            "/proc/net/route",
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
        );
        self.write("/sys/class/net/eth0/mtu", "9001\n");
        let dev = self.path("/sys/class/net/eth0/device");
        std::fs::create_dir_all(&dev).unwrap();
        let _ = std::fs::remove_file(dev.join("driver"));
        std::os::unix::fs::symlink(
            format!("../../../bus/pci/drivers/{driver}"),
            dev.join("driver"),
        )
        .unwrap();
        self.sysctl("net.ipv4.tcp_mtu_probing", "1");
    }

    pub fn root(&self) -> &Path {
        &self.dir
    }
}

/// Live answers chosen by the test.
#[derive(Debug, Clone)]
pub struct FakeLive {
    pub nofile: Option<Limit>,
    pub memlock: Option<Limit>,
    pub uring: Result<(), String>,
    /// CPUs that refuse pinning.
    pub pin_fails: Vec<usize>,
    pub nic_stats: Option<Vec<(String, u64)>>,
}

impl Default for FakeLive {
    fn default() -> Self {
        FakeLive {
            nofile: Some(Limit {
                soft: 1_048_576,
                hard: 1_048_576,
            }),
            memlock: Some(Limit {
                soft: 64 << 20,
                hard: 64 << 20,
            }),
            uring: Ok(()),
            pin_fails: Vec::new(),
            nic_stats: Some(
                ["bw_in", "bw_out", "pps", "conntrack", "linklocal"]
                    .iter()
                    .map(|k| (format!("{k}_allowance_exceeded"), 0))
                    .chain([("tx_timeout".to_string(), 3)])
                    .collect(),
            ),
        }
    }
}

impl LiveProbe for FakeLive {
    fn nofile(&self) -> Option<Limit> {
        self.nofile
    }
    fn memlock(&self) -> Option<Limit> {
        self.memlock
    }
    fn uring(&self) -> Result<(), String> {
        self.uring.clone()
    }
    fn pin(&self, cpu: usize) -> Result<(), String> {
        if self.pin_fails.contains(&cpu) {
            Err(format!("sched_setaffinity(cpu {cpu}): EPERM"))
        } else {
            Ok(())
        }
    }
    fn nic_stats(&self, _iface: &str) -> Option<Vec<(String, u64)>> {
        self.nic_stats.clone()
    }
}

/// 4 workers, one listener on :8080 (10,000 conns per worker, backlog 4096), one upstream.
pub const CONFIG: &str = r#"
workers = 4
[[listeners]]
address = "127.0.0.1:8080"
[[upstreams]]
name = "be"
servers = ["10.0.0.1:9000"]
[[routes]]
path_prefix = "/"
upstream = "be"
"#;

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
