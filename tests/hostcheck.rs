//! Fake-root matrix: a good host passes every check, and each single shortfall fails or warns
//! exactly the check it should and no other. Plus the shipped profiles against the checker, the
//! start-up gate, and `ringway check --format json` through the binary.

mod fakehost;

use fakehost::{FakeLive, FakeRoot, CONFIG, STOCK};
use std::process::Command;

use ringway::config::{load_str, HostCheckMode, Snapshot};
use ringway::hostcheck::probe::Limit;
use ringway::hostcheck::profile::{self, ProfileName};
use ringway::hostcheck::{gate, run_checks, tune, Host, Report, Status};

fn config() -> Snapshot {
    load_str(CONFIG, "test.toml").unwrap()
}

fn check(root: &FakeRoot, live: FakeLive, cfg: &Snapshot) -> Report {
    run_checks(&Host::new(root.root(), Box::new(live)), cfg)
}

/// Asserts that exactly `expected` (name, status) are not PASS; everything else passes.
fn assert_only(report: &Report, expected: &[(&str, Status)]) {
    for (name, status) in expected {
        let row = report.checks.iter().find(|c| c.name == *name);
        let row = row.unwrap_or_else(|| panic!("no row {name:?}\n{}", report.to_text()));
        assert_eq!(row.status, *status, "{name}\n{}", report.to_text());
        assert!(
            !row.fix.is_empty() || row.status == Status::Pass,
            "{name} has no fix"
        );
    }
    for c in report.checks.iter().filter(|c| c.status != Status::Pass) {
        assert!(
            expected.iter().any(|(n, _)| *n == c.name),
            "unexpected {} {}\n{}",
            c.status.as_str(),
            c.name,
            report.to_text()
        );
    }
}

#[test]
fn good_host_passes_everything() {
    let root = FakeRoot::good("good");
    let r = check(&root, FakeLive::default(), &config());
    assert_only(&r, &[]);
    assert_eq!(r.exit_code(), 0);
    // 4 x 10000 x 2 + 4 x 64 pooled + 4 listeners + (4 x 6 + 64) margin
    assert_eq!(
        r.demand.fds,
        80_000 + 256 + 4 + 88,
        "{}",
        r.demand.fds_formula
    );
    assert!(r.to_text().contains("= 80348"));
}

/// One mutation of the good host (sysctl, file removal or live answer) and what it must cause.
struct Case {
    what: &'static str,
    sysctls: &'static [(&'static str, &'static str)],
    remove: &'static [&'static str],
    live: fn(&mut FakeLive),
    expect: &'static [(&'static str, Status)],
}

const NONE: fn(&mut FakeLive) = |_| {};
use Status::{Fail, Warn};

const CASES: &[Case] = &[
    Case {
        what: "nofile hard too low",
        sysctls: &[],
        remove: &[],
        live: |l| {
            l.nofile = Some(Limit {
                soft: 20_000,
                hard: 20_000,
            })
        },
        expect: &[("RLIMIT_NOFILE hard", Fail), ("RLIMIT_NOFILE soft", Fail)],
    },
    Case {
        what: "nofile soft only",
        sysctls: &[],
        remove: &[],
        live: |l| {
            l.nofile = Some(Limit {
                soft: 1024,
                hard: 1_048_576,
            })
        },
        expect: &[("RLIMIT_NOFILE soft", Warn)],
    },
    Case {
        what: "nofile unreadable",
        sysctls: &[],
        remove: &[],
        live: |l| l.nofile = None,
        expect: &[("RLIMIT_NOFILE", Warn)],
    },
    Case {
        what: "nr_open",
        sysctls: &[("fs.nr_open", "65536")],
        remove: &[],
        live: NONE,
        expect: &[("fs.nr_open", Fail)],
    },
    Case {
        what: "file-max",
        sysctls: &[("fs.file-max", "65536")],
        remove: &[],
        live: NONE,
        expect: &[("fs.file-max", Fail)],
    },
    Case {
        what: "narrow port range",
        sysctls: &[("net.ipv4.ip_local_port_range", "32768 60999")],
        remove: &[],
        live: NONE,
        expect: &[("ephemeral ports per upstream address", Fail)],
    },
    Case {
        what: "listen port not reserved",
        sysctls: &[("net.ipv4.ip_local_reserved_ports", "443")],
        remove: &[],
        live: NONE,
        expect: &[("listen port 8080 vs ephemeral range", Fail)],
    },
    Case {
        what: "somaxconn",
        sysctls: &[("net.core.somaxconn", "1024")],
        remove: &[],
        live: NONE,
        expect: &[("net.core.somaxconn", Fail)],
    },
    Case {
        what: "somaxconn missing",
        sysctls: &[],
        remove: &["/proc/sys/net/core/somaxconn"],
        live: NONE,
        expect: &[("net.core.somaxconn", Warn)],
    },
    Case {
        what: "syn backlog",
        sysctls: &[("net.ipv4.tcp_max_syn_backlog", "1024")],
        remove: &[],
        live: NONE,
        expect: &[("net.ipv4.tcp_max_syn_backlog", Warn)],
    },
    Case {
        what: "fin_timeout",
        sysctls: &[("net.ipv4.tcp_fin_timeout", "60")],
        remove: &[],
        live: NONE,
        expect: &[("net.ipv4.tcp_fin_timeout", Warn)],
    },
    Case {
        what: "tw_reuse",
        sysctls: &[("net.ipv4.tcp_tw_reuse", "2")],
        remove: &[],
        live: NONE,
        expect: &[("net.ipv4.tcp_tw_reuse", Warn)],
    },
    Case {
        what: "tw_recycle enabled",
        sysctls: &[("net.ipv4.tcp_tw_recycle", "1")],
        remove: &[],
        live: NONE,
        expect: &[("net.ipv4.tcp_tw_recycle", Fail)],
    },
    Case {
        what: "tw_recycle present but off",
        sysctls: &[("net.ipv4.tcp_tw_recycle", "0")],
        remove: &[],
        live: NONE,
        expect: &[],
    },
    Case {
        what: "rmem/wmem",
        sysctls: &[
            ("net.core.rmem_max", "212992"),
            ("net.core.wmem_max", "212992"),
        ],
        remove: &[],
        live: NONE,
        expect: &[("net.core.rmem_max", Warn), ("net.core.wmem_max", Warn)],
    },
    Case {
        what: "syncookies",
        sysctls: &[("net.ipv4.tcp_syncookies", "0")],
        remove: &[],
        live: NONE,
        expect: &[("net.ipv4.tcp_syncookies", Warn)],
    },
    Case {
        what: "old kernel, memlock fine",
        sysctls: &[("kernel.osrelease", "5.10.0-1")],
        remove: &["/proc/sys/kernel/io_uring_disabled"],
        live: NONE,
        expect: &[("kernel version", Warn)],
    },
    Case {
        what: "old kernel, memlock low",
        sysctls: &[("kernel.osrelease", "5.10.0-1")],
        remove: &["/proc/sys/kernel/io_uring_disabled"],
        live: |l| {
            l.memlock = Some(Limit {
                soft: 65536,
                hard: 65536,
            })
        },
        expect: &[("kernel version", Warn), ("RLIMIT_MEMLOCK (rings)", Warn)],
    },
    Case {
        what: "io_uring_disabled",
        sysctls: &[("kernel.io_uring_disabled", "2")],
        remove: &[],
        live: NONE,
        expect: &[("kernel.io_uring_disabled", Warn)],
    },
    Case {
        what: "io_uring_disabled unreadable on 6.8",
        sysctls: &[],
        remove: &["/proc/sys/kernel/io_uring_disabled"],
        live: NONE,
        expect: &[("kernel.io_uring_disabled", Warn)],
    },
    Case {
        what: "ring probe fails",
        sysctls: &[],
        remove: &[],
        live: |l| l.uring = Err("io_uring_setup: EPERM".into()),
        expect: &[("ring setup probe", Warn), ("driver `run` will use", Warn)],
    },
    Case {
        what: "pinning refused",
        sysctls: &[],
        remove: &[],
        live: |l| l.pin_fails = vec![2],
        expect: &[("worker pinning", Warn)],
    },
    Case {
        what: "cpu list unreadable",
        sysctls: &[],
        remove: &["/proc/self/status"],
        live: NONE,
        expect: &[("workers vs allowed CPUs", Warn)],
    },
    Case {
        what: "pipe-max-size",
        sysctls: &[("fs.pipe-max-size", "32768")],
        remove: &[],
        live: NONE,
        expect: &[("fs.pipe-max-size", Fail)],
    },
    Case {
        what: "conntrack table",
        sysctls: &[("net.netfilter.nf_conntrack_max", "65536")],
        remove: &[],
        live: NONE,
        expect: &[("net.netfilter.nf_conntrack_max", Fail)],
    },
    Case {
        what: "conntrack not loaded",
        sysctls: &[],
        remove: &["/sys/module/nf_conntrack", "/proc/sys/net/netfilter"],
        live: NONE,
        expect: &[],
    },
];

#[test]
fn each_single_shortfall_flags_its_check() {
    for (i, case) in CASES.iter().enumerate() {
        let root = FakeRoot::good(&format!("case{i}"));
        for (k, v) in case.sysctls {
            root.sysctl(k, v);
        }
        for p in case.remove {
            root.remove(p);
        }
        let mut live = FakeLive::default();
        (case.live)(&mut live);
        let r = check(&root, live, &config());
        eprintln!("case {}", case.what);
        assert_only(&r, case.expect);
        let fails = case.expect.iter().any(|(_, s)| *s == Fail);
        assert_eq!(r.exit_code(), i32::from(fails), "{}", case.what);
    }
}

#[test]
fn cgroup_cpuset_limits_workers() {
    let root = FakeRoot::good("cpuset");
    root.write(
        "/sys/fs/cgroup/system.slice/ringway.service/cpuset.cpus.effective",
        "0-1\n",
    );
    let r = check(&root, FakeLive::default(), &config());
    assert_only(&r, &[("workers vs allowed CPUs", Warn)]);
    assert!(r
        .checks
        .iter()
        .any(|c| c.current.contains("4 workers on 2 CPUs")));
}

#[test]
fn forced_io_uring_turns_probe_failure_into_fail() {
    let root = FakeRoot::good("forced-uring");
    let cfg = load_str(&format!("io_driver = \"io_uring\"\n{CONFIG}"), "t.toml").unwrap();
    let live = FakeLive {
        uring: Err("io_uring_setup: ENOSYS".into()),
        ..FakeLive::default()
    };
    let r = check(&root, live, &cfg);
    assert_only(
        &r,
        &[("ring setup probe", Fail), ("driver `run` will use", Fail)],
    );
}

#[test]
fn big_backlog_needs_big_somaxconn() {
    let root = FakeRoot::good("backlog");
    let cfg = load_str(
        &CONFIG.replace(
            "address = \"127.0.0.1:8080\"",
            "address = \"127.0.0.1:8080\"\nbacklog = 100000",
        ),
        "t",
    )
    .unwrap();
    let r = check(&root, FakeLive::default(), &cfg);
    assert_only(
        &r,
        &[
            ("net.core.somaxconn", Fail),
            ("net.ipv4.tcp_max_syn_backlog", Warn),
        ],
    );
}

#[test]
fn ec2_host_good_and_each_shortfall() {
    let root = FakeRoot::good("ec2");
    root.make_ec2("ena");
    let r = check(&root, FakeLive::default(), &config());
    assert_only(&r, &[]);
    assert!(r
        .checks
        .iter()
        .any(|c| c.name == "eth0 allowance counters" && c.current.contains("bw_in=0")));

    let busy = FakeLive {
        nic_stats: Some(vec![
            ("bw_out_allowance_exceeded".into(), 0),
            ("pps_allowance_exceeded".into(), 17),
        ]),
        ..FakeLive::default()
    };
    let r = check(&root, busy, &config());
    assert_only(&r, &[("eth0 allowance counters", Warn)]);
    assert!(r.to_text().contains("pps=17"));

    let r = check(
        &root,
        FakeLive {
            nic_stats: None,
            ..FakeLive::default()
        },
        &config(),
    );
    assert_only(&r, &[("eth0 allowance counters", Warn)]);

    root.sysctl("net.ipv4.tcp_mtu_probing", "0");
    let r = check(&root, FakeLive::default(), &config());
    assert_only(&r, &[("eth0 MTU", Warn)]);

    root.make_ec2("ixgbevf");
    let r = check(&root, FakeLive::default(), &config());
    assert_only(&r, &[("eth0 driver", Warn)]);
}

/// Stock host + the shipped profile written by `tune` + the limits.d rlimits = a clean check.
fn profile_makes_clean(p: ProfileName, ec2: bool) {
    let root = FakeRoot::with("profile", STOCK);
    if ec2 {
        root.make_ec2("ena");
        root.sysctl("net.ipv4.tcp_mtu_probing", "0");
    }
    let host = Host::new(root.root(), Box::new(FakeLive::default()));
    let before = run_checks(&host, &config());
    assert!(
        before.has_fail(),
        "stock host should not pass\n{}",
        before.to_text()
    );
    let diffs = tune::diff(&host, p);
    assert_eq!(tune::apply(&host, p, &diffs).unwrap(), 0);
    assert!(root.path("/etc/sysctl.d/60-ringway.conf").exists());
    assert_eq!(root.path("/etc/sysctl.d/61-ringway-ec2.conf").exists(), ec2);
    assert!(
        tune::diff(&host, p).iter().all(|d| !d.differs()),
        "apply left differences"
    );
    let n = profile::limit("nofile").unwrap();
    let memlock = profile::limit("memlock").unwrap() * 1024;
    let live = FakeLive {
        nofile: Some(Limit { soft: n, hard: n }),
        memlock: Some(Limit {
            soft: memlock,
            hard: memlock,
        }),
        ..FakeLive::default()
    };
    let r = run_checks(&Host::new(root.root(), Box::new(live)), &config());
    assert_only(&r, &[]);
}

#[test]
fn generic_profile_satisfies_checker() {
    profile_makes_clean(ProfileName::Generic, false);
}

#[test]
fn ec2_profile_satisfies_checker() {
    profile_makes_clean(ProfileName::Ec2, true);
}

#[test]
fn tune_leaves_larger_floors_alone() {
    let root = FakeRoot::with("floors", STOCK);
    let host = Host::new(root.root(), Box::new(FakeLive::default()));
    let d = tune::diff(&host, ProfileName::Generic);
    let file_max = d.iter().find(|d| d.key == "fs.file-max").unwrap();
    assert!(
        !file_max.differs(),
        "file-max above the profile must not be lowered"
    );
    assert!(d
        .iter()
        .find(|d| d.key == "net.core.somaxconn")
        .unwrap()
        .differs());
}

/// Applying a profile never lowers what the host has above it: not live, number by number
/// for `tcp_rmem`/`tcp_wmem`, and not at the next boot (the installed file keeps the host's
/// higher values).
#[test]
fn tune_apply_never_shrinks_live_or_at_boot() {
    let root = FakeRoot::with("shrink", STOCK);
    root.sysctl("fs.file-max", "4000000");
    root.sysctl("net.ipv4.tcp_rmem", "4096 131072 33554432");
    root.sysctl("net.ipv4.tcp_wmem", "4096 16384 4194304");
    let host = Host::new(root.root(), Box::new(FakeLive::default()));
    let p = ProfileName::Generic;
    let diffs = tune::diff(&host, p);
    assert_eq!(tune::apply(&host, p, &diffs).unwrap(), 0);
    let live = |k: &str| host.sysctl(k).unwrap();
    assert_eq!(live("fs.file-max"), "4000000");
    assert_eq!(
        live("net.ipv4.tcp_rmem"),
        "4096 131072 33554432",
        "kept above the profile"
    );
    assert_eq!(
        live("net.ipv4.tcp_wmem"),
        "4096 65536 16777216",
        "raised where below"
    );
    let installed = std::fs::read_to_string(root.path("/etc/sysctl.d/60-ringway.conf")).unwrap();
    let at_boot: Vec<_> = profile::parse_sysctl(&installed)
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect();
    let boot = |k: &str| {
        at_boot
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(boot("fs.file-max"), Some("4000000"), "{installed}");
    assert_eq!(
        boot("net.ipv4.tcp_rmem"),
        Some("4096 131072 33554432"),
        "{installed}"
    );
    assert_eq!(
        boot("net.ipv4.tcp_wmem"),
        Some("4096 65536 16777216"),
        "{installed}"
    );
    assert_eq!(boot("net.core.somaxconn"), Some("65535"), "{installed}");
    assert!(installed.contains("# ringway tune kept this host's higher value (profile: 2097152)"));
    assert!(tune::diff(&host, p).iter().all(|d| !d.differs()));
}

#[test]
fn gate_follows_host_check_mode() {
    let root = FakeRoot::good("gate");
    root.sysctl("fs.nr_open", "1024");
    let r = check(&root, FakeLive::default(), &config());
    let err = gate(&r, HostCheckMode::Enforce).unwrap_err();
    assert!(
        err.contains("FAIL") && err.contains("fs.nr_open") && err.contains("sysctl -w fs.nr_open="),
        "{err}"
    );
    gate(&r, HostCheckMode::Warn).unwrap();
    gate(&r, HostCheckMode::Off).unwrap();
    root.sysctl("fs.nr_open", "2097152");
    gate(
        &check(&root, FakeLive::default(), &config()),
        HostCheckMode::Enforce,
    )
    .unwrap();
}

#[test]
fn startup_check_off_reads_nothing() {
    let cfg = load_str(&format!("host_check = \"off\"\n{CONFIG}"), "t").unwrap();
    ringway::hostcheck::startup_check(&cfg, std::path::Path::new("/nonexistent")).unwrap();
}

/// `ringway check --format json` through the binary, against a fake root and a small config
/// (the live probes are the real ones, so the demand stays under any CI rlimit).
#[test]
fn check_cli_json_and_exit_code() {
    let root = FakeRoot::good("cli");
    root.cpus("0");
    let cfg = root.path("/ringway.toml");
    std::fs::write(&cfg, "workers = 1\n[[listeners]]\naddress = \"127.0.0.1:8080\"\nmax_connections = 100\n[[upstreams]]\nname = \"be\"\nservers = [\"127.0.0.1:9000\"]\n[[routes]]\nupstream = \"be\"\n").unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
            .args(["check", "--format", "json", "-c"])
            .arg(&cfg)
            .arg("--root")
            .arg(root.root())
            .output()
            .unwrap()
    };
    let out = run();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["summary"]["fail"], 0, "{v:#}");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(v["demand"]["fds"], 200 + 64 + 1 + 70);
    let rows = v["checks"].as_array().unwrap();
    assert!(rows
        .iter()
        .all(|c| ["PASS", "WARN", "FAIL"].contains(&c["status"].as_str().unwrap())));

    root.sysctl("net.core.somaxconn", "128");
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "net.core.somaxconn")
        .unwrap();
    assert_eq!(row["status"], "FAIL");
    assert_eq!(row["current"], "128");
    assert!(row["fix"][0]
        .as_str()
        .unwrap()
        .starts_with("sysctl -w net.core.somaxconn="));
}

/// The unit file through `systemd/verify.sh` (CI installs systemd; skipped where it is absent).
#[test]
fn systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed; skipping (CI runs systemd/verify.sh)");
        return;
    }
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/verify.sh"))
        .env("RINGWAY_BIN", env!("CARGO_BIN_EXE_ringway"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
