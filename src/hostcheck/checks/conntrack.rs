//! Conntrack: when nf_conntrack is loaded every connection takes a table entry, and a full table
//! drops new connections. Entries also outlive closes (TIME_WAIT), hence the 2x headroom.

use super::{Check, Status, GENERIC_FILE};
use crate::hostcheck::demand::Demand;
use crate::hostcheck::probe::Host;

const NAME: &str = "net.netfilter.nf_conntrack_max";

pub fn checks(host: &Host, d: &Demand) -> Vec<Check> {
    if !host.exists("/sys/module/nf_conntrack") && !host.exists("/proc/sys/net/netfilter") {
        return vec![Check::new("conntrack", NAME, Status::Pass)
            .current("nf_conntrack not loaded")
            .required("-")];
    }
    let need = d.tracked_conns.saturating_mul(2);
    vec![super::at_least(
        host,
        "conntrack",
        NAME,
        need,
        Status::Fail,
        1_048_576u64.max(need),
        GENERIC_FILE,
    )
    .required(format!(">= {need} (2 x {} tracked conns)", d.tracked_conns))]
}
