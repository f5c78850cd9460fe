//! `ringway demo`: the gateway in front of the built-in backend, with an embedded config, so a
//! fresh machine can see it work with no file and no other program.

use std::net::SocketAddr;

use crate::backend::{Backend, BackendOptions};
use crate::config;

/// The embedded config; `{listen}` and `{backend}` are filled in at start.
const DEMO_CONFIG: &str = r#"
workers = "auto"
host_check = "warn"

[access_log]
enabled = true

[[listeners]]
address = "{listen}"

[[upstreams]]
name = "demo-backend"
servers = ["{backend}"]

# /api/... goes to the backend with the /api prefix removed.
[[routes]]
path_prefix = "/api"
strip_prefix = true
upstream = "demo-backend"
response_timeout = "2s"

[[routes]]
path_prefix = "/"
upstream = "demo-backend"
"#;

/// Starts the demo backend and runs the gateway on `listen` until SIGINT/SIGTERM.
pub fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let backend = Backend::start(BackendOptions {
        addr: "127.0.0.1:0".parse()?,
        ..BackendOptions::default()
    })?;
    let text = DEMO_CONFIG
        .replace("{listen}", &listen.to_string())
        .replace("{backend}", &backend.addr.to_string());
    let snap = config::load_str(&text, "<demo>").map_err(anyhow::Error::msg)?;
    let base = format!("http://{listen}");
    println!(
        "ringway demo: gateway on {base}, built-in backend on {}",
        backend.addr
    );
    println!("try:");
    println!("  curl -i {base}/                          # 50-byte body from the backend");
    println!("  curl -s {base}/size/1048576 | wc -c      # 1 MiB body");
    println!("  curl -i --data-binary 'hello ringway' {base}/echo");
    println!("  curl -i {base}/api/status/204            # /api prefix stripped");
    println!("  curl -i {base}/api/delay/3000            # 504 after the route's 2 s timeout");
    println!("  curl -N '{base}/sse?count=5&interval_ms=500'");
    println!("Ctrl-C stops it.");
    let r = crate::server::run(snap, None);
    backend.stop();
    r
}
