//! Process lifecycle: start one pinned worker per core, report readiness to systemd, reload on
//! SIGHUP, drain on SIGTERM/SIGINT.

pub mod listener;
pub mod notify;
pub mod runtime;
mod task;
pub mod worker;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{SigSet, Signal};

use crate::accesslog::Sink;
use crate::config::{self, Snapshot, SnapshotHandle};

use worker::WorkerSpec;

/// Runs the gateway until SIGTERM/SIGINT. `config_path` is re-read on SIGHUP.
pub fn run(snap: Snapshot, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let signals = block_signals()?;
    let choice = runtime::choose(snap.io_driver, snap.ring_entries).map_err(anyhow::Error::msg)?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let workers = snap.worker_count(cores.len());
    let sink = if snap.access_log.enabled {
        Some(
            Sink::open(&snap.access_log.path)
                .with_context(|| format!("cannot open access log {}", snap.access_log.path))?,
        )
    } else {
        None
    };
    for l in &snap.listeners {
        ensure_free(l).with_context(|| {
            format!(
                "cannot listen on {} ({}): is another server using it?",
                l.addr, l.name
            )
        })?;
    }
    let drain = snap.drain_timeout;
    let listeners: Vec<String> = snap.listeners.iter().map(|l| l.addr.to_string()).collect();
    let handle = SnapshotHandle::new(snap);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut ctrls = Vec::new();
    for id in 0..workers {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        ctrls.push(ours);
        let spec = WorkerSpec {
            id,
            core: (!cores.is_empty()).then(|| cores[id % cores.len()]),
            driver: choice.driver,
            ring_entries: handle.load().ring_entries,
            handle: handle.clone(),
            sink: sink.clone(),
            ctrl: theirs,
            ready: ready_tx.clone(),
        };
        let done = done_tx.clone();
        std::thread::Builder::new()
            .name(format!("ringway-w{id}"))
            .spawn(move || {
                worker::run(spec);
                drop(done);
            })?;
    }
    drop(done_tx);
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop_workers(&ctrls);
                bail!("worker failed to start: {e}");
            }
            Err(_) => {
                stop_workers(&ctrls);
                bail!("workers did not start within 10 s");
            }
        }
    }
    notify::notify("READY=1");
    tracing::info!(
        workers,
        driver = %choice.driver,
        why = %choice.why,
        listen = %listeners.join(","),
        "ringway ready"
    );
    wait_for_stop(
        &signals,
        &handle,
        config_path.as_deref(),
        sink.as_deref(),
        workers,
    );
    notify::notify("STOPPING=1");
    tracing::info!(drain_timeout = ?drain, "draining");
    stop_workers(&ctrls);
    // Workers exit after their in-flight requests or the drain timeout, whichever is first.
    let _ = done_rx.recv_timeout(drain + Duration::from_secs(2));
    tracing::info!("stopped");
    Ok(())
}

/// [`listener::ensure_free`], retried for a moment: a predecessor that was killed (not
/// drained) holds its listening sockets until the kernel has torn down its rings.
fn ensure_free(l: &config::ListenerSpec) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        match listener::ensure_free(l) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// Signals are taken synchronously by the main thread; workers inherit the mask and never see them.
fn block_signals() -> anyhow::Result<SigSet> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.add(Signal::SIGUSR1);
    set.thread_block().context("cannot block signals")?;
    Ok(set)
}

fn wait_for_stop(
    signals: &SigSet,
    handle: &Arc<SnapshotHandle>,
    path: Option<&std::path::Path>,
    sink: Option<&Sink>,
    workers: usize,
) {
    // What the process runs with: a reload's restart-only changes are measured against this,
    // not against the last file loaded (which may itself have been waiting for a restart).
    let running = handle.load();
    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => reload(handle, &running, path),
            // Log rotation: the access log is reopened at its configured path.
            Ok(Signal::SIGUSR1) => match sink.map(|s| s.rotate(workers)) {
                None | Some(Ok(false)) => tracing::info!("SIGUSR1: no access log file to reopen"),
                Some(Ok(true)) => tracing::info!("access log reopened"),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "cannot reopen the access log; still writing to the old file")
                }
            },
            Ok(sig) => {
                tracing::info!(signal = %sig, "shutdown requested");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "sigwait failed; shutting down");
                return;
            }
        }
    }
}

/// A failed reload leaves the old config serving.
fn reload(handle: &Arc<SnapshotHandle>, running: &Snapshot, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP ignored: no config file to reload");
        return;
    };
    notify::notify("RELOADING=1");
    match config::load_file(path) {
        Ok(new) => {
            let pending = restart_only_changes(running, &new);
            if !pending.is_empty() {
                tracing::warn!(
                    keys = %pending.join(", "),
                    "these changes need a restart; routes, upstreams and limits apply now"
                );
            }
            handle.swap(new);
            tracing::info!(config = %path.display(), "config reloaded; new requests use it");
        }
        Err(e) => tracing::error!(error = %e, "reload failed; the previous config keeps serving"),
    }
    notify::notify("READY=1");
}

/// Settings a reload does not apply (they shape workers, rings, listeners, pipes and the log
/// sink, which live as long as the process): the keys whose values changed.
fn restart_only_changes(old: &config::Snapshot, new: &config::Snapshot) -> Vec<&'static str> {
    let listener = |l: &config::ListenerSpec| {
        (
            l.addr,
            l.backlog,
            l.max_connections,
            l.header_timeout,
            l.keepalive_timeout,
            l.send_timeout,
        )
    };
    [
        ("workers", old.workers != new.workers),
        ("io_driver", old.io_driver != new.io_driver),
        ("ring_entries", old.ring_entries != new.ring_entries),
        ("drain_timeout", old.drain_timeout != new.drain_timeout),
        ("pipe_size", old.pipe_size != new.pipe_size),
        ("access_log", old.access_log != new.access_log),
        (
            "listeners",
            old.listeners
                .iter()
                .map(listener)
                .ne(new.listeners.iter().map(listener)),
        ),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

fn stop_workers(ctrls: &[std::os::unix::net::UnixStream]) {
    use std::io::Write;
    for mut c in ctrls {
        let _ = c.write_all(b"s");
    }
}
