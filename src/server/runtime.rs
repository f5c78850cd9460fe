//! Which I/O driver workers run on, and with which io_uring setup flags.
//!
//! On these hosts io_uring only beats epoll with `COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN`
//! (design.md: kernel time 17.5 → 11.7–13.1 µs/req), so we probe the kernel for them and drop
//! them one by one where they are refused (DEFER_TASKRUN needs 6.1, SINGLE_ISSUER 6.0,
//! COOP_TASKRUN 5.19).

use std::fmt;

use crate::config::IoDriver;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFlags {
    pub coop_taskrun: bool,
    pub single_issuer: bool,
    pub defer_taskrun: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring(RingFlags),
    Epoll,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Driver::Epoll => write!(f, "epoll"),
            Driver::IoUring(fl) => {
                let mut names = Vec::new();
                if fl.coop_taskrun {
                    names.push("COOP_TASKRUN");
                }
                if fl.single_issuer {
                    names.push("SINGLE_ISSUER");
                }
                if fl.defer_taskrun {
                    names.push("DEFER_TASKRUN");
                }
                if names.is_empty() {
                    names.push("no setup flags");
                }
                write!(f, "io_uring ({})", names.join(" | "))
            }
        }
    }
}

/// The driver choice and why it was made, for the startup log.
pub struct Choice {
    pub driver: Driver,
    pub why: String,
}

const CANDIDATES: [RingFlags; 4] = [
    RingFlags {
        coop_taskrun: true,
        single_issuer: true,
        defer_taskrun: true,
    },
    RingFlags {
        coop_taskrun: true,
        single_issuer: true,
        defer_taskrun: false,
    },
    RingFlags {
        coop_taskrun: true,
        single_issuer: false,
        defer_taskrun: false,
    },
    RingFlags {
        coop_taskrun: false,
        single_issuer: false,
        defer_taskrun: false,
    },
];

/// Picks the driver for `io_driver`; errors only when io_uring is demanded and unusable.
pub fn choose(wanted: IoDriver, entries: u32) -> Result<Choice, String> {
    if wanted == IoDriver::Epoll {
        return Ok(Choice {
            driver: Driver::Epoll,
            why: "io_driver = \"epoll\" in config".into(),
        });
    }
    let mut last_err = None;
    for flags in CANDIDATES {
        match builder(flags).build(entries) {
            Ok(_ring) => {
                let why = if flags == CANDIDATES[0] {
                    "all preferred ring flags accepted".to_string()
                } else {
                    format!(
                        "kernel refused some ring flags ({})",
                        last_err
                            .as_ref()
                            .map_or(String::new(), |e: &std::io::Error| e.to_string())
                    )
                };
                return Ok(Choice {
                    driver: Driver::IoUring(flags),
                    why,
                });
            }
            Err(e) => last_err = Some(e),
        }
    }
    let err = last_err.map_or_else(String::new, |e| e.to_string());
    let why = format!("io_uring unavailable ({err}{})", disabled_hint());
    if wanted == IoDriver::IoUring {
        return Err(format!("io_driver = \"io_uring\" but {why}"));
    }
    Ok(Choice {
        driver: Driver::Epoll,
        why,
    })
}

/// An `io_uring::Builder` with these flags, for monoio's `uring_builder`.
pub fn builder(f: RingFlags) -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    if f.coop_taskrun {
        b.setup_coop_taskrun();
    }
    if f.single_issuer {
        b.setup_single_issuer();
    }
    if f.defer_taskrun {
        b.setup_defer_taskrun();
    }
    b
}

fn disabled_hint() -> String {
    match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        Ok(v) if v.trim() != "0" => format!("; kernel.io_uring_disabled = {}", v.trim()),
        _ => String::new(),
    }
}
