//! SIGHUP reloads the config file: new connections see the new routes, connections that are
//! open keep working, and a broken file leaves the previous config serving.

mod common;

use std::time::{Duration, Instant};

use common::{backend, config_with, free_port, get, Gateway};
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
    // A connection opened before the reload keeps its config and keeps working.
    assert_eq!(kept.request(&get("/one")).status, 200);

    std::fs::write(gw.config_path(), "this is = not [valid toml").unwrap();
    gw.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gw.conn().request(&get("/two")).status, 200, "{}", gw.log());
    assert!(gw.log().contains("reload failed"), "{}", gw.log());
}
