//! Splice pipes: F_SETPIPE_SZ above fs.pipe-max-size fails without CAP_SYS_RESOURCE, which the
//! service does not have, so the configured pipe size must fit under it.

use super::{Check, Status, GENERIC_FILE};
use crate::config::Snapshot;
use crate::hostcheck::probe::Host;

pub fn checks(host: &Host, s: &Snapshot) -> Vec<Check> {
    let need = s.pipe_size as u64;
    vec![super::at_least(
        host,
        "splice",
        "fs.pipe-max-size",
        need,
        Status::Fail,
        16_777_216u64.max(need),
        GENERIC_FILE,
    )
    .required(format!(">= {need} (pipe_size)"))]
}
