//! `ringway run` against a fake host: refuses to start on a FAIL (enforce, the default) and starts
//! with `host_check = "warn"`. Ignored until the `run` command is merged from main.

mod fakehost;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fakehost::{free_port, FakeRoot};

fn config(root: &FakeRoot, port: u16, mode: &str) -> std::path::PathBuf {
    let path = root.path("/ringway.toml");
    std::fs::write(
        &path,
        format!(
            "workers = 1\nhost_check = \"{mode}\"\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
             max_connections = 100\n[[upstreams]]\nname = \"be\"\nservers = [\"127.0.0.1:9\"]\n\
             [[routes]]\nupstream = \"be\"\n"
        ),
    )
    .unwrap();
    path
}

/// A good fake host with one FAIL: somaxconn below the default backlog.
fn failing_host() -> FakeRoot {
    let root = FakeRoot::good("run");
    root.cpus("0");
    root.sysctl("net.core.somaxconn", "128");
    root
}

fn spawn(root: &FakeRoot, cfg: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("run")
        .arg("-c")
        .arg(cfg)
        .env("RINGWAY_HOST_ROOT", root.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]

fn run_refuses_to_start_on_fail() {
    let root = failing_host();
    let cfg = config(&root, free_port(), "enforce");
    let out = spawn(&root, &cfg).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("FAIL") && text.contains("net.core.somaxconn"),
        "{text}"
    );
}

#[test]

fn run_starts_with_host_check_warn() {
    let root = failing_host();
    let port = free_port();
    let cfg = config(&root, port, "warn");
    let mut child = spawn(&root, &cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    let listening = loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listening, "ringway did not start: {text}");
    assert!(
        text.contains("net.core.somaxconn"),
        "FAIL not logged: {text}"
    );
}
