//! `flashpolicyd`: parse, build, run, map errors to exit codes.
//!
//! Exit status: 0 after a clean shutdown, 2 for a usage or configuration
//! error (nothing was served), 1 when the server could not start or a worker
//! failed (returned an error, or panicked), 128 + the signal number (130 for
//! SIGINT, 143 for SIGTERM) when a second SIGINT/SIGTERM cut the drain short.
//!
//! SIGHUP reloads the policy (the `--policy` file is read and validated
//! again, or the `--allow` policy rendered again; nothing else changes). A
//! policy that fails is logged and the old one kept: a reload never stops
//! the server.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use flashpolicy_server::config::{Args, Config};
use flashpolicy_server::error::StartError;
use flashpolicy_server::supervisor;
use tracing::error;

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.log);
    let check = args.check;
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => return exit(&StartError::Config(e)),
    };
    if check {
        return print_check(&config);
    }
    match supervisor::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit(&e),
    }
}

/// Reports `e` and gives its exit status.
fn exit(e: &StartError) -> ExitCode {
    match e {
        // One plain line, file:line:column first, so editors and scripts
        // can jump to it.
        StartError::Config(e) => eprintln!("flashpolicyd: {e}"),
        e => error!("{e}"),
    }
    ExitCode::from(e.exit_code())
}

/// `--check`: what would be served, on stdout, and nothing bound.
fn print_check(config: &Config) -> ExitCode {
    use std::io::Write;
    for w in &config.warnings {
        eprintln!("flashpolicyd: warning: {w}");
    }
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "policy {}: OK", config.policy_summary)
        .and_then(|()| out.write_all(config.reply.document()))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashpolicyd: writing to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
