//! `way2mail-control`: the control plane daemon. Configuration first (fail fast,
//! naming the key), then logging, then the server, which opens the store, binds
//! the socket and serves until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use way2mail_control::server::{self, config::Config};

#[derive(Parser)]
#[command(
    name = "way2mail-control",
    version,
    about = "Way2Mail control plane daemon (tenants, credentials, operators, audit log)"
)]
struct Cli {
    /// Configuration file (TOML); without it the dev defaults apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration and exit: 0 valid, 1 invalid.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("way2mail-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let settings = config.validate()?;
    if cli.check {
        println!("configuration OK");
        return Ok(());
    }
    way2mail_daemon::logging::init(&settings.log);
    server::run(settings)
}
