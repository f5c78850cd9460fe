//! Type=notify: ringway tells systemd READY=1 once every worker's listener is bound and
//! STOPPING=1 when it starts draining, over the $NOTIFY_SOCKET datagram socket.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{backend, config, free_port, temp_dir};

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = sock
        .recv(&mut buf)
        .expect("no sd_notify datagram within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_after_bind_and_stopping_on_sigterm() {
    let b = backend();
    let dir = temp_dir("sd-notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = free_port();
    let cfg = dir.join("ringway.toml");
    std::fs::write(&cfg, config(port, b.addr, "")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["run", "-c"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(recv(&sock), "READY=1");
    // READY means the listener is bound: a connection succeeds at once.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("listener bound before READY=1");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(recv(&sock), "STOPPING=1");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
