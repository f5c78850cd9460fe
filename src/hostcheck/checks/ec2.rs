//! EC2: detected through DMI. On EC2 the NIC should be ENA (enhanced networking), whose
//! allowance-exceeded counters show the instance hitting its bandwidth, PPS or conntrack limits
//! (packets are shaped or dropped silently otherwise), and jumbo frames need MTU probing.

use super::{Check, Status, EC2_FILE};
use crate::hostcheck::probe::Host;

const G: &str = "ec2";
const COUNTERS: [&str; 5] = [
    "bw_in_allowance_exceeded",
    "bw_out_allowance_exceeded",
    "pps_allowance_exceeded",
    "conntrack_allowance_exceeded",
    "linklocal_allowance_exceeded",
];

/// True when DMI names Amazon EC2 (Nitro: sys_vendor; Xen: bios_version contains "amazon").
pub fn is_ec2(host: &Host) -> bool {
    [
        "sys_vendor",
        "board_vendor",
        "product_name",
        "bios_vendor",
        "bios_version",
    ]
    .iter()
    .filter_map(|f| host.read(&format!("/sys/class/dmi/id/{f}")))
    .any(|v| v.contains("Amazon EC2") || v.to_ascii_lowercase().contains("amazon"))
}

pub fn checks(host: &Host) -> Vec<Check> {
    if !is_ec2(host) {
        return vec![Check::new(G, "EC2 detection", Status::Pass)
            .current("not EC2 (DMI)")
            .required("-")];
    }
    let Some(iface) = default_iface(host) else {
        return vec![Check::unknown(
            G,
            "EC2 NIC",
            "/proc/net/route default route",
        )];
    };
    vec![
        Check::new(G, "EC2 detection", Status::Pass)
            .current(format!("EC2, default route via {iface}"))
            .required("-"),
        driver(host, &iface),
        allowances(host, &iface),
        mtu(host, &iface),
    ]
}

/// The interface of the IPv4 default route (destination 00000000).
fn default_iface(host: &Host) -> Option<String> {
    host.read("/proc/net/route")?.lines().skip(1).find_map(|l| {
        let mut f = l.split_whitespace();
        let iface = f.next()?;
        (f.next()? == "00000000").then(|| iface.to_string())
    })
}

fn driver(host: &Host, iface: &str) -> Check {
    let name = format!("{iface} driver");
    let Some(drv) = host.link_name(&format!("/sys/class/net/{iface}/device/driver")) else {
        return Check::unknown(G, name, "/sys/class/net/IF/device/driver");
    };
    Check::new(G, name, if drv == "ena" { Status::Pass } else { Status::Warn })
        .current(&drv)
        .required("ena (enhanced networking)")
        .fix(["use a Nitro instance type with ENA, or: aws ec2 modify-instance-attribute --instance-id <id> --ena-support".to_string()])
}

fn allowances(host: &Host, iface: &str) -> Check {
    let name = format!("{iface} allowance counters");
    let Some(stats) = host.live().nic_stats(iface) else {
        return Check::unknown(G, name, "ethtool -S").fix(["apt-get install ethtool".to_string()]);
    };
    let found: Vec<(String, u64)> = stats
        .into_iter()
        .filter(|(k, _)| COUNTERS.contains(&k.as_str()))
        .collect();
    if found.is_empty() {
        return Check::new(G, name, Status::Warn)
            .current("no allowance counters (ENA driver < 2.2.10?)")
            .required("all 0")
            .fix(["update the ENA driver (amazon-ec2-net-utils / newer kernel)".to_string()]);
    }
    let bad = found.iter().any(|(_, v)| *v > 0);
    let current = found
        .iter()
        .map(|(k, v)| format!("{}={v}", k.trim_end_matches("_allowance_exceeded")))
        .collect::<Vec<_>>()
        .join(" ");
    Check::new(G, name, if bad { Status::Warn } else { Status::Pass })
        .current(current)
        .required("all 0")
        .fix([
            "instance type limits reached: move to a larger instance type or spread the load"
                .to_string(),
        ])
}

/// Jumbo frames (9001) work inside a VPC; paths leaving it are 1500, found by MTU probing.
fn mtu(host: &Host, iface: &str) -> Check {
    let name = format!("{iface} MTU");
    let Some(mtu) = host
        .read(&format!("/sys/class/net/{iface}/mtu"))
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Check::unknown(G, name, "/sys/class/net/IF/mtu");
    };
    let probing = host.sysctl_u64("net.ipv4.tcp_mtu_probing").unwrap_or(0);
    let status = if mtu < 1500 || (mtu > 1500 && probing == 0) {
        Status::Warn
    } else {
        Status::Pass
    };
    Check::new(G, name, status)
        .current(format!("{mtu} (tcp_mtu_probing={probing})"))
        .required(">= 1500; above 1500 needs tcp_mtu_probing >= 1")
        .sysctl_fix("net.ipv4.tcp_mtu_probing", "1", EC2_FILE)
}
