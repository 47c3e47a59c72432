//! `plot`: latency-by-percentile curves of several `.hgrm` files in one SVG,
//! on the usual HdrHistogram axes (x: `1/(1-percentile)` on a log scale,
//! labelled as percentiles; y: latency).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;

/// One `.hgrm` file: (value, percentile as a fraction) rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// Curve label.
    pub label: String,
    /// (latency in the file's unit, quantile 0..=1), in file order.
    pub points: Vec<(f64, f64)>,
}

/// What is wrong with one line of a `.hgrm` file.
#[derive(Debug, Clone, PartialEq)]
pub enum HgrmProblem {
    /// Fewer than two columns.
    TooFewColumns,
    /// A column that is not a number.
    NotANumber(String),
    /// A percentile outside 0..=1.
    PercentileOutOfRange(f64),
}

/// Why a `.hgrm` file could not be read as a percentile distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum HgrmError {
    /// Line `line` (1-based) is not a row.
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: HgrmProblem,
    },
    /// No row at all.
    NoRows,
}

impl fmt::Display for HgrmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HgrmError::Line { line, problem } => {
                write!(f, "line {line}: ")?;
                match problem {
                    HgrmProblem::TooFewColumns => f.write_str("expected \"Value Percentile ...\""),
                    HgrmProblem::NotANumber(v) => write!(f, "{v:?} is not a number"),
                    HgrmProblem::PercentileOutOfRange(p) => {
                        write!(f, "percentile {p} is outside 0..1")
                    }
                }
            }
            HgrmError::NoRows => {
                f.write_str("no percentile rows (is this a .hgrm file written with --hgrm?)")
            }
        }
    }
}

impl std::error::Error for HgrmError {}

/// Why `plot` failed.
#[derive(Debug)]
pub enum PlotError {
    /// More `--label`s than files.
    TooManyLabels {
        /// `--label`s given.
        labels: usize,
        /// Files given.
        files: usize,
    },
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not a percentile distribution.
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: HgrmError,
    },
    /// The SVG could not be drawn or written.
    Draw {
        /// The SVG.
        path: PathBuf,
        /// Why.
        source: DrawingAreaErrorKind<io::Error>,
    },
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::TooManyLabels { labels, files } => {
                write!(f, "{labels} --label for {files} files")
            }
            PlotError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            PlotError::Parse { path, source } => write!(f, "{}: {source}", path.display()),
            PlotError::Draw { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for PlotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlotError::TooManyLabels { .. } => None,
            PlotError::Read { source, .. } => Some(source),
            PlotError::Parse { source, .. } => Some(source),
            PlotError::Draw { source, .. } => Some(source),
        }
    }
}

/// Parses the rows of a `.hgrm` percentile distribution (header, `#[...]`
/// footer and blank lines are skipped).
pub fn parse_hgrm(text: &str) -> Result<Vec<(f64, f64)>, HgrmError> {
    let mut points = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
            continue;
        }
        let bad = |problem| HgrmError::Line {
            line: n + 1,
            problem,
        };
        let mut f = line.split_whitespace();
        let (Some(v), Some(p)) = (f.next(), f.next()) else {
            return Err(bad(HgrmProblem::TooFewColumns));
        };
        let number = |t: &str| {
            t.parse::<f64>()
                .map_err(|_| bad(HgrmProblem::NotANumber(t.to_string())))
        };
        let v = number(v)?;
        let p = number(p)?;
        if !(0.0..=1.0).contains(&p) {
            return Err(bad(HgrmProblem::PercentileOutOfRange(p)));
        }
        points.push((v, p));
    }
    if points.is_empty() {
        return Err(HgrmError::NoRows);
    }
    Ok(points)
}

/// Reads the files, labelled by `labels` in order, else by file name.
pub fn load(files: &[impl AsRef<Path>], labels: &[String]) -> Result<Vec<Distribution>, PlotError> {
    if labels.len() > files.len() {
        return Err(PlotError::TooManyLabels {
            labels: labels.len(),
            files: files.len(),
        });
    }
    files
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path).map_err(|source| PlotError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let points = parse_hgrm(&text).map_err(|source| PlotError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
            let label = labels.get(i).cloned().unwrap_or_else(|| {
                path.file_stem().map_or_else(
                    || path.display().to_string(),
                    |s| s.to_string_lossy().into_owned(),
                )
            });
            Ok(Distribution { label, points })
        })
        .collect()
}

/// x coordinate of a quantile: `1/(1-q)`, capped for q = 1.
fn x_of(q: f64, cap: f64) -> f64 {
    if q >= 1.0 {
        cap
    } else {
        (1.0 / (1.0 - q)).min(cap)
    }
}

/// Labels a `1/(1-q)` tick as a percentile: 10 -> 90%, 1000 -> 99.9%.
fn percentile_label(x: f64) -> String {
    let p = (1.0 - 1.0 / x) * 100.0;
    let mut s = format!("{p:.6}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    format!("{s}%")
}

/// Draws the curves into an SVG at `out`.
pub fn draw(runs: &[Distribution], out: &Path, title: &str, unit: &str) -> Result<(), PlotError> {
    // Up to the highest finite 1/(1-q) in any file, rounded up to a power of 10.
    let finite_max = runs
        .iter()
        .flat_map(|r| r.points.iter())
        .filter(|(_, q)| *q < 1.0)
        .map(|(_, q)| 1.0 / (1.0 - q))
        .fold(10.0f64, f64::max);
    let x_max = 10f64.powf(finite_max.log10().ceil()).max(10.0);
    let y_max = runs
        .iter()
        .flat_map(|r| r.points.iter())
        .map(|(v, _)| *v)
        .fold(0.0f64, f64::max)
        * 1.05;
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };

    let root = SVGBackend::new(out, (1000, 600)).into_drawing_area();
    let err = |source| PlotError::Draw {
        path: out.to_path_buf(),
        source,
    };
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0f64..x_max).log_scale(), 0.0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc(format!("latency ({unit})"))
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(err)?;
    for (i, run) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = run
            .points
            .iter()
            .map(|(v, q)| (x_of(*q, x_max), *v))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(run.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_and_skips_the_rest() {
        let text = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
                    \x20      0.100 0.000000000000          1           1.00\n\
                    \x20      0.500 0.900000000000          9          10.00\n\
                    \x20      1.000 1.000000000000         10\n\
                    #[Mean    =        0.300, StdDeviation   =        0.100]\n";
        assert_eq!(
            parse_hgrm(text).expect("valid"),
            vec![(0.1, 0.0), (0.5, 0.9), (1.0, 1.0)]
        );
        assert!(parse_hgrm("#only a comment\n").is_err());
        assert_eq!(
            parse_hgrm("1.0 2.0\n").map_err(|e| e.to_string()),
            Err("line 1: percentile 2 is outside 0..1".to_string())
        );
        assert_eq!(
            parse_hgrm("x 0.5\n").map_err(|e| e.to_string()),
            Err("line 1: \"x\" is not a number".to_string())
        );
    }

    #[test]
    fn labels() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert!((x_of(0.99, 1e6) - 100.0).abs() < 1e-6);
        assert_eq!(x_of(1.0, 1e4), 1e4);
    }
}
