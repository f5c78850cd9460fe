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
    /// Saturating throughout: a snapshot built in code skips the config's bounds, and a wrapped
    /// sum would turn a huge demand into a small one that the fd checks PASS.
    pub fn compute(s: &Snapshot, allowed_cpus: usize) -> Demand {
        let w = s.worker_count(allowed_cpus) as u64;
        let sum = |it: &mut dyn Iterator<Item = u64>| it.fold(0u64, u64::saturating_add);
        let per_worker = sum(&mut s.listeners.iter().map(|l| l.max_connections as u64));
        let idle_per_worker = sum(&mut s
            .upstreams
            .iter()
            .map(|u| (u.max_idle as u64).saturating_mul(u.servers.len() as u64)));
        let max_idle = s.upstreams.iter().map(|u| u.max_idle as u64).max();
        let client_conns = w.saturating_mul(per_worker);
        let pool_conns = w.saturating_mul(idle_per_worker);
        let listener_fds = w.saturating_mul(s.listeners.len() as u64);
        let margin = w.saturating_mul(FDS_PER_WORKER).saturating_add(FDS_PROCESS);
        // Each client connection may hold one upstream connection: two sides.
        let upstream_side = if s.upstreams.is_empty() {
            0
        } else {
            client_conns
        };
        let tracked_conns = client_conns
            .saturating_add(upstream_side)
            .saturating_add(pool_conns);
        let fds = tracked_conns
            .saturating_add(listener_fds)
            .saturating_add(margin);
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
            per_upstream_addr: max_idle
                .map_or(0, |idle| w.saturating_mul(per_worker.saturating_add(idle))),
            max_backlog: s
                .listeners
                .iter()
                .map(|l| l.backlog as u64)
                .max()
                .unwrap_or(0),
            tracked_conns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "workers = 4\n[[listeners]]\naddress = \"127.0.0.1:8080\"\n\
        [[upstreams]]\nname = \"be\"\nservers = [\"10.0.0.1:9000\"]\n\
        [[routes]]\nupstream = \"be\"\n";

    #[test]
    fn huge_demand_saturates_instead_of_wrapping() {
        let mut s = crate::config::load_str(CFG, "t.toml").unwrap();
        s.listeners[0].max_connections = usize::MAX;
        s.listeners.push(s.listeners[0].clone());
        s.upstreams[0].max_idle = usize::MAX;
        let d = Demand::compute(&s, 4);
        assert_eq!(d.fds, u64::MAX, "{}", d.fds_formula);
        assert_eq!(d.tracked_conns, u64::MAX);
        assert_eq!(d.per_upstream_addr, u64::MAX);
    }

    #[test]
    fn bounded_config_demand_is_exact() {
        let s = crate::config::load_str(CFG, "t.toml").unwrap();
        let d = Demand::compute(&s, 4);
        // 4 x 10000 x 2 + 4 x 64 pooled + 4 listeners + (4 x 6 + 64) margin
        assert_eq!(d.fds, 80_000 + 256 + 4 + 88, "{}", d.fds_formula);
    }
}
