//! Ephemeral ports: each upstream connection takes a local port from ip_local_port_range, and
//! ports are unique per destination address, so the range must cover the connections the config
//! can open to one upstream address. A listening port inside the range can be taken by an
//! outgoing connection before ringway binds it, unless it is reserved.

use super::{Check, Status, GENERIC_FILE};
use crate::config::Snapshot;
use crate::hostcheck::demand::Demand;
use crate::hostcheck::probe::Host;
use crate::hostcheck::profile::{self, ProfileName};

const G: &str = "ports";
const RANGE: &str = "net.ipv4.ip_local_port_range";
const RESERVED: &str = "net.ipv4.ip_local_reserved_ports";

pub fn checks(host: &Host, s: &Snapshot, d: &Demand) -> Vec<Check> {
    let Some((lo, hi)) = host.sysctl(RANGE).and_then(|v| parse_range(&v)) else {
        return vec![
            Check::unknown(G, RANGE, "/proc/sys/net/ipv4/ip_local_port_range").sysctl_fix(
                RANGE,
                "1024 65535",
                GENERIC_FILE,
            ),
        ];
    };
    let reserved = host.sysctl(RESERVED).map(|v| parse_ports(&v));
    let mut rows = vec![range_size(lo, hi, reserved.as_deref().unwrap_or(&[]), d)];
    rows.extend(listen_ports(s, lo, hi, reserved.as_deref()));
    rows
}

fn range_size(lo: u16, hi: u16, reserved: &[u16], d: &Demand) -> Check {
    let in_range = reserved.iter().filter(|p| (lo..=hi).contains(*p)).count() as u64;
    let size = (hi as u64 + 1)
        .saturating_sub(lo as u64)
        .saturating_sub(in_range);
    let need = d.per_upstream_addr;
    let status = if size >= need {
        Status::Pass
    } else {
        Status::Fail
    };
    Check::new(G, "ephemeral ports per upstream address", status)
        .current(format!("{size} ({lo}-{hi}, {in_range} reserved)"))
        .required(format!(
            ">= {need} ({} workers x (conns + idle pool))",
            d.workers
        ))
        .sysctl_fix(RANGE, "1024 65535", GENERIC_FILE)
}

fn listen_ports(s: &Snapshot, lo: u16, hi: u16, reserved: Option<&[u16]>) -> Vec<Check> {
    let mut ports: Vec<u16> = s.listeners.iter().map(|l| l.addr.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    // One value for every FAIL row: applying any row's fix (or all of them) reserves every listen
    // port in the range at once, keeps what is reserved now and what the shipped profile reserves.
    let fix_value = reserved.map(|res| {
        let mut v: Vec<u16> = res.to_vec();
        v.extend(profile_reserved());
        v.extend(ports.iter().copied().filter(|p| (lo..=hi).contains(p)));
        format_ports(&v)
    });
    ports
        .into_iter()
        .map(|p| {
            let name = format!("listen port {p} vs ephemeral range");
            if !(lo..=hi).contains(&p) {
                return Check::new(G, name, Status::Pass)
                    .current(format!("outside {lo}-{hi}"))
                    .required("outside range or reserved");
            }
            let Some(res) = reserved else {
                return Check::unknown(G, name, "/proc/sys/net/ipv4/ip_local_reserved_ports");
            };
            let ok = res.contains(&p);
            Check::new(G, name, if ok { Status::Pass } else { Status::Fail })
                .current(if ok {
                    format!("inside {lo}-{hi}, reserved")
                } else {
                    format!("inside {lo}-{hi}, not reserved")
                })
                .required("outside range or reserved")
                .sysctl_fix(
                    RESERVED,
                    fix_value.as_deref().unwrap_or_default(),
                    GENERIC_FILE,
                )
        })
        .collect()
}

fn parse_range(v: &str) -> Option<(u16, u16)> {
    let mut it = v.split_whitespace().map(|x| x.parse::<u16>());
    match (it.next()?, it.next()?) {
        (Ok(a), Ok(b)) if a <= b => Some((a, b)),
        _ => None,
    }
}

/// Parses `80,443,8000-8010` (the kernel's own format).
pub(crate) fn parse_ports(v: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u16>().ok()),
        }
    }
    out
}

/// The ports the shipped generic profile reserves (its line is what the fix rewrites).
fn profile_reserved() -> Vec<u16> {
    profile::sysctls(ProfileName::Generic)
        .into_iter()
        .find(|e| e.key == RESERVED)
        .map_or_else(Vec::new, |e| parse_ports(&e.value))
}

/// Ports as one sysctl value in the kernel's format, sorted, runs written as `a-b`.
fn format_ports(ports: &[u16]) -> String {
    let mut v = ports.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if j == i {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_round_trip_with_ranges() {
        assert_eq!(
            format_ports(&[443, 80, 8000, 8001, 8002, 80]),
            "80,443,8000-8002"
        );
        assert_eq!(format_ports(&[]), "");
        assert_eq!(format_ports(&[65534, 65535]), "65534-65535");
        let v = parse_ports("80,443,8000-8002");
        assert_eq!(format_ports(&v), "80,443,8000-8002");
    }
}
