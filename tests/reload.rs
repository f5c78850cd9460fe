//! SIGHUP reloads the config file: new requests see the new routes (on new connections and on
//! kept-alive ones alike), open connections keep working, and a broken file leaves the previous
//! config serving.

mod common;

use std::time::{Duration, Instant};

use common::{backend, config_with, free_port, get, wait_until, Gateway};
use nix::sys::signal::Signal;

/// Polls with fresh connections until `path` answers `status` (reload is asynchronous).
fn wait_status(gw: &Gateway, path: &str, status: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if gw.conn().request(&get(path)).status == status {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sighup_applies_a_good_config_and_keeps_the_old_one_on_error() {
    let b = backend();
    let port = free_port();
    let first = config_with(port, b.addr, "", "", "")
        .replace("path_prefix = \"/\"", "path_prefix = \"/one\"");
    let gw = Gateway::start(&first);
    assert_eq!(gw.conn().request(&get("/one")).status, 200);
    assert_eq!(gw.conn().request(&get("/two")).status, 404);
    let mut kept = gw.conn();
    assert_eq!(kept.request(&get("/one")).status, 200);

    let second = first.replace("/one", "/two");
    std::fs::write(gw.config_path(), &second).unwrap();
    gw.signal(Signal::SIGHUP);
    assert!(
        wait_status(&gw, "/two", 200),
        "reload not applied:\n{}",
        gw.log()
    );
    assert_eq!(gw.conn().request(&get("/one")).status, 404);
    // A connection opened before the reload keeps working, on the new config from its next
    // request: a removed route is gone for it too.
    assert_eq!(kept.request(&get("/one")).status, 404);
    assert_eq!(kept.request(&get("/two")).status, 200);

    std::fs::write(gw.config_path(), "this is = not [valid toml").unwrap();
    gw.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gw.conn().request(&get("/two")).status, 200, "{}", gw.log());
    assert!(gw.log().contains("reload failed"), "{}", gw.log());
}

/// Settings a reload cannot apply (listener timeouts, drain timeout, access log …) are named in
/// a warning instead of being dropped silently; the rest of the file applies.
#[test]
fn reload_names_the_changes_that_need_a_restart() {
    let b = backend();
    let port = free_port();
    let first = config_with(port, b.addr, "drain_timeout = \"5s\"", "", "");
    let gw = Gateway::start(&first);
    let second = first
        .replace("drain_timeout = \"5s\"", "drain_timeout = \"9s\"")
        .replace(
            &format!("address = \"127.0.0.1:{port}\"\n"),
            &format!("address = \"127.0.0.1:{port}\"\nkeepalive_timeout = \"1s\"\n"),
        )
        .replace("path_prefix = \"/\"", "path_prefix = \"/new\"");
    std::fs::write(gw.config_path(), &second).unwrap();
    gw.signal(Signal::SIGHUP);
    // The old route `/` answered `/new` too: wait for what only the new config does.
    assert!(wait_status(&gw, "/other", 404), "{}", gw.log());
    assert_eq!(gw.conn().request(&get("/new")).status, 200);
    let log = gw.log();
    let warning = log
        .lines()
        .find(|l| l.contains("need a restart"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains("drain_timeout"), "{warning}");
    assert!(warning.contains("listeners"), "{warning}");
    assert!(!warning.contains("workers"), "{warning}");

    // What counts is what the process runs with, not the file loaded last: a further reload
    // that leaves those keys as they are still warns …
    let warnings = |gw: &Gateway| {
        let log = gw.log();
        log.lines()
            .filter(|l| l.contains("need a restart"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let third = second.replace("path_prefix = \"/new\"", "path_prefix = \"/third\"");
    std::fs::write(gw.config_path(), &third).unwrap();
    gw.signal(Signal::SIGHUP);
    assert!(wait_status(&gw, "/third", 200), "{}", gw.log());
    let w = warnings(&gw);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[1].contains("drain_timeout") && w[1].contains("listeners"),
        "{w:?}"
    );
    // … and one that goes back to the running values does not.
    let back = first.replace("path_prefix = \"/\"", "path_prefix = \"/back\"");
    std::fs::write(gw.config_path(), &back).unwrap();
    gw.signal(Signal::SIGHUP);
    assert!(wait_status(&gw, "/back", 200), "{}", gw.log());
    assert_eq!(warnings(&gw).len(), 2, "{}", gw.log());
}

/// Head limits are part of the config a reload swaps: a kept-alive connection's very next
/// request after the reload is held to the new ones, like a new connection's.
#[test]
fn reload_applies_head_limits_to_the_next_request_of_kept_alive_connections() {
    let b = backend();
    let first = config_with(free_port(), b.addr, "[limits]\nmax_headers = 100", "", "");
    let gw = Gateway::start(&first);
    let mut kept = gw.conn();
    assert_eq!(kept.request(&get("/size/1")).status, 200);
    let mut many = String::from("GET /size/1 HTTP/1.1\r\nHost: t\r\n");
    for i in 0..10 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(kept.request(many.as_bytes()).status, 200);

    std::fs::write(
        gw.config_path(),
        first.replace("max_headers = 100", "max_headers = 5"),
    )
    .unwrap();
    gw.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(5), || {
        gw.log().contains("config reloaded")
    });
    assert_eq!(
        gw.conn().request(many.as_bytes()).status,
        431,
        "{}",
        gw.log()
    );
    assert_eq!(
        kept.request(many.as_bytes()).status,
        431,
        "the kept-alive connection's next request"
    );
}

/// A reload retires the worker's upstream pools: their idle connections close within a sweep
/// (a second), with no request needed and even while a client connection opened before the
/// reload still holds the old config (only the current pools are swept for idle timeouts, so
/// the old ones would keep theirs for good).
#[test]
fn reload_closes_the_old_pools_idle_upstream_connections() {
    // Each connection is noted when the gateway closes it.
    let up = common::RawUpstream::start_counting(|mut c| {
        while c.read_head().is_some() {
            std::thread::sleep(Duration::from_millis(200));
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
        true
    });
    let cfg = config_with(free_port(), up.addr, "", "idle_timeout = \"60s\"", "");
    let gw = Gateway::start(&cfg);
    let mut kept = gw.conn();
    assert_eq!(kept.request(&get("/")).status, 200);
    // Five at once: five pooled upstream connections.
    let addr = gw.addr;
    let burst: Vec<_> = (0..5)
        .map(|_| std::thread::spawn(move || common::Conn::connect(addr).request(&get("/")).status))
        .collect();
    for t in burst {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert!(up.accepted() >= 5);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(up.noted(), 0, "pooled, not closed");

    std::fs::write(gw.config_path(), cfg.replace("60s", "50s")).unwrap();
    gw.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(5), || {
        gw.log().contains("config reloaded")
    });
    // With no request after the reload: the worker's sweep (every second) retires them.
    let pooled = up.accepted();
    wait_until(Duration::from_secs(3), || up.noted() >= pooled);
    assert_eq!(up.noted(), pooled, "the old pool's are closed");
    assert_eq!(gw.conn().request(&get("/")).status, 200);
    assert_eq!(kept.request(&get("/")).status, 200);
}
