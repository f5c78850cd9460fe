//! What a config asks of the host, computed once and printed with its arithmetic so an operator
//! can see where a required number comes from.

use serde::Serialize;

use crate::config::Snapshot;

/// Fds a worker holds besides connections: its listeners are counted separately; this covers the
/// ring (or epoll) fd, an eventfd, the splice pipe pair and a spare for a connect in progress.
const FDS_PER_WORKER: u64 = 6;
/// Process-wide fds: std streams, the log file, the config file during reload, signalfd, admin.
const FDS_PROCESS: u64 = 64;

#[derive(Debug, Clone, Serialize)]
pub struct Demand {
    pub workers: u64,
    /// Client connections over all workers and listeners (max_connections is per worker).
    pub client_conns: u64,
    /// Idle pooled upstream connections over all workers, upstreams and servers.
    pub pool_conns: u64,
    pub listener_fds: u64,
    pub margin: u64,
    /// Total fds one ringway process may hold.
    pub fds: u64,
    /// The arithmetic behind `fds`, printed in the report.
    pub fds_formula: String,
    /// Concurrent connections to a single upstream address in the worst case (all traffic to it).
    pub per_upstream_addr: u64,
    /// Largest configured listen backlog.
    pub max_backlog: u64,
    /// Kernel-tracked TCP connections (client side + upstream side + pool).
    pub tracked_conns: u64,
}

impl Demand {
    pub fn compute(s: &Snapshot, allowed_cpus: usize) -> Demand {
        let w = s.worker_count(allowed_cpus) as u64;
        let per_worker: u64 = s.listeners.iter().map(|l| l.max_connections as u64).sum();
        let idle_per_worker: u64 = s
            .upstreams
            .iter()
            .map(|u| (u.max_idle * u.servers.len()) as u64)
            .sum();
        let max_idle = s.upstreams.iter().map(|u| u.max_idle as u64).max();
        let client_conns = w * per_worker;
        let pool_conns = w * idle_per_worker;
        let listener_fds = w * s.listeners.len() as u64;
        let margin = w * FDS_PER_WORKER + FDS_PROCESS;
        // Each client connection may hold one upstream connection: two sides.
        let upstream_side = if s.upstreams.is_empty() {
            0
        } else {
            client_conns
        };
        let fds = client_conns + upstream_side + pool_conns + listener_fds + margin;
        let fds_formula = format!(
            "{w} workers x {per_worker} conns x {sides} sides + {pool_conns} pooled + \
             {listener_fds} listeners + {margin} margin = {fds}",
            sides = if s.upstreams.is_empty() { 1 } else { 2 },
        );
        Demand {
            workers: w,
            client_conns,
            pool_conns,
            listener_fds,
            margin,
            fds,
            fds_formula,
            per_upstream_addr: max_idle.map_or(0, |idle| w * (per_worker + idle)),
            max_backlog: s
                .listeners
                .iter()
                .map(|l| l.backlog as u64)
                .max()
                .unwrap_or(0),
            tracked_conns: client_conns + upstream_side + pool_conns,
        }
    }
}
