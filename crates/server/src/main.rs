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

use std::process::ExitCode;

use clap::Parser;
use flashpolicy_server::config::{Args, Config, LogFormat};
use flashpolicy_server::error::StartError;
use flashpolicy_server::{activation, logging, supervisor};
use tracing::{error, warn};

fn main() -> ExitCode {
    let args = Args::parse();
    let format = args.log_format;
    logging::init(&args.log, format);
    let check = args.check;
    // Socket activation, while the process has one thread (the variables
    // are unset); `--check` binds nothing, so it takes nothing either.
    let passed = if check {
        None
    } else {
        match activation::take() {
            Ok(passed) => passed,
            Err(e) => return exit(&StartError::Activation(e), format),
        }
    };
    let config = match Config::from_args_passed(args, passed) {
        Ok(config) => config,
        Err(e) => return exit(&StartError::Config(e), format),
    };
    if check {
        return print_check(&config);
    }
    match supervisor::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit(&e, format),
    }
}

/// Reports `e` and gives its exit status.
fn exit(e: &StartError, format: LogFormat) -> ExitCode {
    match e {
        // One plain line, file:line:column first, so editors and scripts
        // can jump to it (in JSON mode, one JSON log line like the rest).
        StartError::Config(e) if format == LogFormat::Text => eprintln!("flashpolicyd: {e}"),
        e => error!("{e}"),
    }
    ExitCode::from(e.exit_code())
}

/// `--check`: what would be served, on stdout, and nothing bound.
fn print_check(config: &Config) -> ExitCode {
    use std::io::Write;
    for w in &config.warnings {
        match config.log_format {
            LogFormat::Text => eprintln!("flashpolicyd: warning: {w}"),
            LogFormat::Json => warn!("{w}"),
        }
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
