//! TCP stack settings a gateway leans on: accept queues sized for the configured backlog, quick
//! recycling of closed upstream connections, buffer ceilings, and no tcp_tw_recycle.

use super::{at_least, Check, Status, GENERIC_FILE};
use crate::config::Snapshot;
use crate::hostcheck::probe::Host;

const G: &str = "tcp";

pub fn checks(host: &Host, s: &Snapshot) -> Vec<Check> {
    let backlog = s
        .listeners
        .iter()
        .map(|l| l.backlog as u64)
        .max()
        .unwrap_or(0);
    vec![
        // The kernel silently truncates listen(backlog) to somaxconn: the config would be a lie.
        at_least(
            host,
            G,
            "net.core.somaxconn",
            backlog,
            Status::Fail,
            65535.max(backlog),
            GENERIC_FILE,
        ),
        // SYN queue shorter than the backlog only hurts under SYN bursts (syncookies cover it).
        at_least(
            host,
            G,
            "net.ipv4.tcp_max_syn_backlog",
            backlog,
            Status::Warn,
            65535.max(backlog),
            GENERIC_FILE,
        ),
        fin_timeout(host),
        exact(
            host,
            "net.ipv4.tcp_tw_reuse",
            "1",
            "1 (reuse TIME_WAIT ports for upstream connects)",
        ),
        tw_recycle(host),
        at_least(
            host,
            G,
            "net.core.rmem_max",
            16_777_216,
            Status::Warn,
            67_108_864,
            GENERIC_FILE,
        ),
        at_least(
            host,
            G,
            "net.core.wmem_max",
            16_777_216,
            Status::Warn,
            67_108_864,
            GENERIC_FILE,
        ),
        exact(
            host,
            "net.ipv4.tcp_syncookies",
            "1",
            "1 (cookies only when the SYN queue overflows)",
        ),
    ]
}

fn fin_timeout(host: &Host) -> Check {
    let name = "net.ipv4.tcp_fin_timeout";
    let Some(v) = host.sysctl_u64(name) else {
        return Check::unknown(G, name, "/proc/sys/net/ipv4/tcp_fin_timeout").sysctl_fix(
            name,
            "30",
            GENERIC_FILE,
        );
    };
    Check::new(G, name, if v <= 30 { Status::Pass } else { Status::Warn })
        .current(v)
        .required("<= 30")
        .sysctl_fix(name, "30", GENERIC_FILE)
}

fn exact(host: &Host, name: &str, want: &str, required: &str) -> Check {
    let Some(v) = host.sysctl(name) else {
        return Check::unknown(G, name, &crate::hostcheck::probe::sysctl_path(name)).sysctl_fix(
            name,
            want,
            GENERIC_FILE,
        );
    };
    Check::new(
        G,
        name,
        if v == want {
            Status::Pass
        } else {
            Status::Warn
        },
    )
    .current(v)
    .required(required)
    .sysctl_fix(name, want, GENERIC_FILE)
}

/// Removed in Linux 4.12; where it still exists, enabling it drops SYNs from clients behind NAT.
fn tw_recycle(host: &Host) -> Check {
    let name = "net.ipv4.tcp_tw_recycle";
    let path = crate::hostcheck::probe::sysctl_path(name);
    match host.sysctl(name) {
        None if !host.exists(&path) => Check::new(G, name, Status::Pass)
            .current("absent (removed in Linux 4.12)")
            .required("absent or 0"),
        Some(v) if v == "0" => Check::new(G, name, Status::Pass)
            .current(0)
            .required("absent or 0"),
        v => Check::new(G, name, Status::Fail)
            .current(v.unwrap_or_else(|| "unreadable".into()))
            .required("absent or 0 (breaks clients behind NAT)")
            .fix([
                format!("sysctl -w {name}=0"),
                "grep -rn tcp_tw_recycle /etc/sysctl.conf /etc/sysctl.d/  # delete that line"
                    .to_string(),
            ]),
    }
}
