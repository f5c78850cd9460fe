//! Minimal CLI glue for the host checker; the lead's main.rs replaces it.

use clap::{Parser, Subcommand};
use ringway::hostcheck::{CheckArgs, TuneArgs};

#[derive(Parser)]
#[command(name = "ringway", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check this host against what the config needs.
    Check(CheckArgs),
    /// Compare this host with a tuning profile, or apply it.
    Tune(TuneArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let code = match Cli::parse().cmd {
        Cmd::Check(a) => a.run()?,
        Cmd::Tune(a) => a.run()?,
    };
    std::process::exit(code)
}
