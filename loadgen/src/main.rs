//! `flashpolicy-loadgen`: parse, run (or merge, or plot), report.
//!
//! Exit status: 0 when the run completed (whatever it measured: errors are
//! reported, not fatal), 1 when it could not run or a report could not be
//! written, 2 for a usage error.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use flashpolicy_loadgen::cli::{Cli, Command, MergeArgs, PlotArgs, RunConfig};
use flashpolicy_loadgen::hlog::{self, HlogError};
use flashpolicy_loadgen::plot::{self, PlotError};
use flashpolicy_loadgen::report::{self, Summary};
use flashpolicy_loadgen::runner::{self, RunError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Merge(m)) => merge(m),
        Some(Command::Plot(p)) => plot_cmd(p),
        None => match RunConfig::from_args(cli.run) {
            Ok(cfg) => run(cfg),
            Err(e) => {
                eprintln!("flashpolicy-loadgen: {e}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashpolicy-loadgen: {e}");
            ExitCode::from(1)
        }
    }
}

/// Why a command that parsed failed (exit status 1).
#[derive(Debug)]
enum Failure {
    /// The load test could not run.
    Run(RunError),
    /// `merge` could not read the logs.
    Merge(HlogError),
    /// `plot` failed.
    Plot(PlotError),
    /// The summary could not be encoded as JSON.
    Json(serde_json::Error),
    /// A report file (`--json` or `--hgrm`) could not be written.
    Write {
        /// The option naming the file.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Run(e) => e.fmt(f),
            Failure::Merge(e) => e.fmt(f),
            Failure::Plot(e) => e.fmt(f),
            Failure::Json(e) => e.fmt(f),
            Failure::Write {
                option,
                path,
                source,
            } => write!(f, "{option} {}: {source}", path.display()),
        }
    }
}

fn run(cfg: RunConfig) -> Result<(), Failure> {
    let json = cfg.json.clone();
    let hgrm = cfg.hgrm.clone();
    let quiet = cfg.quiet;
    let summary = runner::run(cfg).map_err(Failure::Run)?;
    outputs(&summary, json.as_deref(), hgrm.as_deref(), quiet)
}

fn outputs(
    s: &Summary,
    json: Option<&Path>,
    hgrm: Option<&Path>,
    quiet: bool,
) -> Result<(), Failure> {
    if !quiet {
        print!("{}", report::text(s));
    }
    let write = |option, path: &Path, text: String| {
        std::fs::write(path, text).map_err(|source| Failure::Write {
            option,
            path: path.to_path_buf(),
            source,
        })
    };
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report::json(s)).map_err(Failure::Json)?;
        write("--json", path, text + "\n")?;
    }
    if let Some(path) = hgrm {
        write(
            "--hgrm",
            path,
            report::hgrm(&s.good().latency.total, 1000.0),
        )?;
    }
    Ok(())
}

fn merge(m: MergeArgs) -> Result<(), Failure> {
    let merged = hlog::merge(&m.files).map_err(Failure::Merge)?;
    for f in &merged.without_summary {
        eprintln!(
            "flashpolicy-loadgen: {f}: no summary line; errors unknown, ok counted from histograms"
        );
    }
    outputs(
        &merged.summary(m.files.len()),
        m.json.as_deref(),
        m.hgrm.as_deref(),
        false,
    )
}

fn plot_cmd(p: PlotArgs) -> Result<(), Failure> {
    let runs = plot::load(&p.files, &p.labels).map_err(Failure::Plot)?;
    let title = p
        .title
        .unwrap_or_else(|| "Latency by percentile".to_string());
    plot::draw(&runs, &p.output, &title, "ms").map_err(Failure::Plot)?;
    println!("wrote {}", p.output.display());
    Ok(())
}
