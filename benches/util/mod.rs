//! Shared by the streaming soak clients: argument parsing, percentiles, fd limit, and
//! sampling another process's RSS and CPU from /proc.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

/// `--key value` pairs and bare `--flag`s; cargo's own `--bench` is ignored.
pub struct Args(HashMap<String, String>);

impl Args {
    pub fn parse() -> Args {
        let mut map = HashMap::new();
        let mut it = std::env::args().skip(1).peekable();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                continue;
            };
            let value = match it.peek() {
                Some(v) if !v.starts_with("--") => it.next().unwrap_or_default(),
                _ => "1".to_string(),
            };
            map.insert(key.to_string(), value);
        }
        Args(map)
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        match self.0.get(key) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("--{key}: cannot parse {v:?}")),
            None => default,
        }
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    /// `--addr HOST:PORT`, which every soak client needs.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.string("addr")
            .expect("--addr HOST:PORT")
            .parse()
            .expect("--addr")
    }
}

/// On a monoio runtime of this thread's own, runs `task(id, stats)` for every id from
/// `first` below `end` in steps of `step` (one soak thread's share of the connections), all
/// concurrently, and returns the stats they filled once every task has finished.
pub fn run_tasks<S, Fut>(
    first: usize,
    end: usize,
    step: usize,
    task: impl Fn(usize, Rc<RefCell<S>>) -> Fut,
) -> S
where
    S: Default + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let stats = Rc::new(RefCell::new(S::default()));
        let mut tasks = Vec::new();
        for id in (first..end).step_by(step) {
            tasks.push(monoio::spawn(task(id, stats.clone())));
        }
        for task in tasks {
            task.await;
        }
        Rc::try_unwrap(stats).ok().expect("tasks done").into_inner()
    })
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit").0
}

/// "p50 A p90 B p99 C p99.9 D max E" of sorted samples.
pub fn percentiles(sorted: &[u32]) -> String {
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {}",
        pct(sorted, 50.0),
        pct(sorted, 90.0),
        pct(sorted, 99.0),
        pct(sorted, 99.9),
        sorted.last().copied().unwrap_or(0)
    )
}

/// p-th percentile (0..=100) of sorted samples.
pub fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (utime, stime) of a process, summed over its threads.
pub fn cpu(pid: u32) -> Option<(Duration, Duration)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let tick = 1.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let t = |i: usize| Duration::from_secs_f64(f[i].parse::<f64>().unwrap_or(0.0) * tick);
    // utime is field 14, stime 15 (1-based); `rest` starts at field 3.
    Some((t(11), t(12)))
}

/// Samples a process: CPU at the start and end of a window, and the peak RSS in between.
pub struct ProcWatch {
    pub pid: u32,
    start: Option<(Duration, Duration)>,
    pub rss_start_kib: u64,
    pub rss_peak_kib: u64,
}

impl ProcWatch {
    pub fn begin(pid: u32) -> ProcWatch {
        let rss = rss_kib(pid).unwrap_or(0);
        ProcWatch {
            pid,
            start: cpu(pid),
            rss_start_kib: rss,
            rss_peak_kib: rss,
        }
    }

    pub fn sample(&mut self) {
        if let Some(r) = rss_kib(self.pid) {
            self.rss_peak_kib = self.rss_peak_kib.max(r);
        }
    }

    /// (user, system) CPU seconds spent since `begin`.
    pub fn cpu_since(&self) -> (f64, f64) {
        match (self.start, cpu(self.pid)) {
            (Some((u0, s0)), Some((u1, s1))) => ((u1 - u0).as_secs_f64(), (s1 - s0).as_secs_f64()),
            _ => (0.0, 0.0),
        }
    }
}
