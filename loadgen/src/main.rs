//! `flashpolicy-loadgen`: parse, run (or merge, or plot), report.
//!
//! Exit status: 0 when the run completed (whatever it measured: errors are
//! reported, not fatal), 1 when it could not run or a report could not be
//! written, 2 for a usage error.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use flashpolicy_loadgen::cli::{Cli, Command, MergeArgs, PlotArgs, RunConfig};
use flashpolicy_loadgen::report::{self, Summary};
use flashpolicy_loadgen::{hlog, plot, runner};

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

fn run(cfg: RunConfig) -> Result<(), String> {
    let json = cfg.json.clone();
    let hgrm = cfg.hgrm.clone();
    let quiet = cfg.quiet;
    let summary = runner::run(cfg)?;
    outputs(&summary, json.as_deref(), hgrm.as_deref(), quiet)
}

fn outputs(
    s: &Summary,
    json: Option<&Path>,
    hgrm: Option<&Path>,
    quiet: bool,
) -> Result<(), String> {
    if !quiet {
        print!("{}", report::text(s));
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report::json(s)).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    if let Some(path) = hgrm {
        let text = report::hgrm(&s.good().latency.total, 1000.0);
        std::fs::write(path, text).map_err(|e| format!("--hgrm {}: {e}", path.display()))?;
    }
    Ok(())
}

fn merge(m: MergeArgs) -> Result<(), String> {
    let merged = hlog::merge(&m.files)?;
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

fn plot_cmd(p: PlotArgs) -> Result<(), String> {
    let runs = plot::load(&p.files, &p.labels)?;
    let title = p
        .title
        .unwrap_or_else(|| "Latency by percentile".to_string());
    plot::draw(&runs, &p.output, &title, "ms")?;
    println!("wrote {}", p.output.display());
    Ok(())
}
