//! HdrHistogram interval logs (`--log`) and `merge`.
//!
//! The log is the standard V2 format (compressed histograms, one line per
//! interval, as written by Java's `HistogramLogWriter`), readable by
//! HdrHistogram's log tools. Each second has three lines: the good clients'
//! total latency (untagged, so tools that read one histogram per line see
//! that one), then `Tag=connect` and `Tag=first_byte`. Values are
//! microseconds. A final comment line,
//! `#flashpolicy-loadgen: mode=… ok=… started=… errors=connect:0,… duration_s=…`,
//! carries the counts that histograms cannot, so `merge` can add errors up.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, LogIteratorError, Tag,
};
use hdrhistogram::serialization::{DeserializeError, Deserializer, V2DeflateSerializer};
use hdrhistogram::{AdditionError, Histogram};

use crate::mix::Scenario;
use crate::report::Summary;
use crate::stats::{ErrorKind, Latencies, Stats, ERROR_KINDS};

/// The first line of the summary comment.
const SUMMARY_PREFIX: &str = "#flashpolicy-loadgen: ";

/// Writes an interval log as the run goes.
pub struct Writer {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hlog::Writer")
    }
}

impl Writer {
    /// Creates the file and writes the header; interval timestamps count
    /// from `base` (the end of the warm-up).
    pub fn create(path: &Path, base: SystemTime) -> io::Result<Writer> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("[Logged with flashpolicy-loadgen]")
            .add_comment("[Histogram log format version 1.3]")
            .add_comment("[Values in microseconds; untagged: total latency of good clients]")
            .with_start_time(base)
            .with_base_time(base)
            .begin_log_with(&mut out, &mut serializer)?;
        writeln!(
            out,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )?;
        Ok(Writer { out, serializer })
    }

    /// Writes interval `index` (seconds since the base time).
    pub fn interval(&mut self, index: u64, length: Duration, l: &Latencies) -> io::Result<()> {
        let start = Duration::from_secs(index);
        let mut w =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        let lines = [
            (&l.total, None),
            (&l.connect, Tag::new("connect")),
            (&l.first_byte, Tag::new("first_byte")),
        ];
        for (h, tag) in lines {
            w.write_histogram(h, start, length, tag)
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
        }
        Ok(())
    }

    /// Writes the summary comment and flushes.
    pub fn finish(mut self, s: &Summary) -> io::Result<()> {
        let good = s.good();
        let errors: Vec<String> = ErrorKind::ALL
            .iter()
            .map(|k| format!("{}:{}", k.name(), good.errors[k.index()]))
            .collect();
        writeln!(
            self.out,
            "{SUMMARY_PREFIX}mode={} ok={} started={} errors={} duration_s={:.6}",
            s.mode,
            good.ok,
            good.started,
            errors.join(","),
            s.duration_s
        )?;
        self.out.flush()
    }
}

/// A byte that is not in the standard base64 alphabet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base64Error {
    /// The byte.
    pub byte: u8,
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid base64 byte {:?}", char::from(self.byte))
    }
}

impl std::error::Error for Base64Error {}

/// Why `merge` could not read or combine the logs.
#[derive(Debug)]
pub enum HlogError {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not an interval log.
    NotALog {
        /// The file.
        path: PathBuf,
        /// Where parsing failed.
        source: LogIteratorError,
    },
    /// An interval's histogram is not base64.
    Base64 {
        /// The file.
        path: PathBuf,
        /// The bad byte.
        source: Base64Error,
    },
    /// An interval's histogram does not decode.
    Histogram {
        /// The file.
        path: PathBuf,
        /// Why.
        source: DeserializeError,
    },
    /// An interval's histogram cannot be added to the others.
    Add {
        /// The file.
        path: PathBuf,
        /// Why.
        source: AdditionError,
    },
    /// The combined histogram of a tag does not fit the report's bounds.
    Tag {
        /// The tag (`total`, `connect`, `first_byte`).
        tag: &'static str,
        /// Why.
        source: AdditionError,
    },
}

impl fmt::Display for HlogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HlogError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            HlogError::NotALog { path, source } => {
                write!(f, "{}: not an interval log ({source:?})", path.display())
            }
            HlogError::Base64 { path, source } => write!(f, "{}: {source}", path.display()),
            HlogError::Histogram { path, source } => {
                write!(f, "{}: bad histogram: {source:?}", path.display())
            }
            HlogError::Add { path, source } => write!(f, "{}: {source:?}", path.display()),
            HlogError::Tag { tag, source } => write!(f, "{tag}: {source:?}"),
        }
    }
}

impl std::error::Error for HlogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HlogError::Read { source, .. } => Some(source),
            HlogError::NotALog { .. } => None,
            HlogError::Base64 { source, .. } => Some(source),
            HlogError::Histogram { source, .. } => Some(source),
            HlogError::Add { source, .. } | HlogError::Tag { source, .. } => Some(source),
        }
    }
}

/// Decodes standard base64 (with or without padding).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.trim().trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in bytes {
        let v = val(c).ok_or(Base64Error { byte: c })?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// What `merge` adds up from several logs.
#[derive(Debug)]
pub struct Merged {
    /// Total, connect and first-byte latency over every interval of every file.
    pub latency: Latencies,
    /// Successes (from the summary comments, else the histogram count).
    pub ok: u64,
    /// Started clients (from the summary comments).
    pub started: u64,
    /// Errors by kind (from the summary comments).
    pub errors: [u64; ERROR_KINDS],
    /// The modes found (`open`, `closed`).
    pub modes: Vec<String>,
    /// From the earliest interval start to the latest interval end, over all files.
    pub span: Duration,
    /// Files that had no summary comment (counts come from histograms only).
    pub without_summary: Vec<String>,
}

/// Reads and combines interval logs.
pub fn merge(paths: &[impl AsRef<Path>]) -> Result<Merged, HlogError> {
    let mut acc: HashMap<String, Histogram<u64>> = HashMap::new();
    let mut ok = 0u64;
    let mut started = 0u64;
    let mut errors = [0u64; ERROR_KINDS];
    let mut modes: Vec<String> = Vec::new();
    let mut earliest: Option<f64> = None;
    let mut latest: Option<f64> = None;
    let mut without_summary = Vec::new();
    let mut deserializer = Deserializer::new();
    for path in paths {
        let path = path.as_ref();
        let name = path.display().to_string();
        let data = std::fs::read(path).map_err(|source| HlogError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut base = 0.0f64;
        let mut file_total = 0u64;
        for entry in IntervalLogIterator::new(&data) {
            let entry = entry.map_err(|source| HlogError::NotALog {
                path: path.to_path_buf(),
                source,
            })?;
            match entry {
                LogEntry::BaseTime(t) => base = t.as_secs_f64(),
                LogEntry::StartTime(t) => {
                    if base == 0.0 {
                        base = t.as_secs_f64();
                    }
                }
                LogEntry::Interval(iv) => {
                    let raw = base64_decode(iv.encoded_histogram()).map_err(|source| {
                        HlogError::Base64 {
                            path: path.to_path_buf(),
                            source,
                        }
                    })?;
                    let h: Histogram<u64> =
                        deserializer
                            .deserialize(&mut raw.as_slice())
                            .map_err(|source| HlogError::Histogram {
                                path: path.to_path_buf(),
                                source,
                            })?;
                    let tag = iv.tag().map_or("total", |t| t.as_str()).to_string();
                    if tag == "total" {
                        file_total += h.len();
                    }
                    let start = base + iv.start_timestamp().as_secs_f64();
                    let end = start + iv.duration().as_secs_f64();
                    earliest = Some(earliest.map_or(start, |e| e.min(start)));
                    latest = Some(latest.map_or(end, |l| l.max(end)));
                    let slot = acc.entry(tag).or_insert_with(|| {
                        let mut h = Histogram::new(crate::stats::SIGFIG).expect("constant sigfig");
                        h.auto(true);
                        h
                    });
                    slot.add(&h).map_err(|source| HlogError::Add {
                        path: path.to_path_buf(),
                        source,
                    })?;
                }
            }
        }
        let text = String::from_utf8_lossy(&data);
        match text.lines().find_map(|l| l.strip_prefix(SUMMARY_PREFIX)) {
            Some(line) => {
                for field in line.split_whitespace() {
                    let Some((k, v)) = field.split_once('=') else {
                        continue;
                    };
                    match k {
                        "mode" if !modes.iter().any(|m| m == v) => modes.push(v.to_string()),
                        "ok" => ok += v.parse::<u64>().unwrap_or(0),
                        "started" => started += v.parse::<u64>().unwrap_or(0),
                        "errors" => {
                            for kv in v.split(',') {
                                if let Some((ek, n)) = kv.split_once(':') {
                                    if let Some(kind) = ErrorKind::from_name(ek) {
                                        errors[kind.index()] += n.parse::<u64>().unwrap_or(0);
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            None => {
                ok += file_total;
                without_summary.push(name);
            }
        }
    }
    let take = |acc: &mut HashMap<String, Histogram<u64>>,
                tag: &'static str|
     -> Result<Histogram<u64>, HlogError> {
        let mut h = crate::stats::new_histogram();
        if let Some(src) = acc.remove(tag) {
            h.add(&src)
                .map_err(|source| HlogError::Tag { tag, source })?;
        }
        Ok(h)
    };
    let latency = Latencies {
        total: take(&mut acc, "total")?,
        connect: take(&mut acc, "connect")?,
        first_byte: take(&mut acc, "first_byte")?,
    };
    let span = match (earliest, latest) {
        (Some(a), Some(b)) if b > a => Duration::from_secs_f64(b - a),
        _ => Duration::ZERO,
    };
    Ok(Merged {
        latency,
        ok,
        started,
        errors,
        modes,
        span,
        without_summary,
    })
}

impl Merged {
    /// The combined report, as a [`Summary`].
    pub fn summary(&self, files: usize) -> Summary {
        let mut stats = Stats::new();
        let good = &mut stats.by_scenario[Scenario::Good.index()];
        good.ok = self.ok;
        good.started = self.started;
        good.errors = self.errors;
        good.latency = self.latency.clone();
        let mode = match self.modes.as_slice() {
            [one] => one.clone(),
            [] => "unknown".to_string(),
            _ => "mixed".to_string(),
        };
        Summary {
            mode: mode.clone(),
            description: format!(
                "flashpolicy-loadgen merge: {files} logs ({mode} loop), {:.2} s from the first interval to the last",
                self.span.as_secs_f64()
            ),
            duration_s: self.span.as_secs_f64(),
            stats,
            scenarios: vec![Scenario::Good],
            rate: None,
            connections: None,
            threads: None,
            cpu: None,
            elapsed: None,
            fallback: false,
            send_delay: None,
            proxy_protocol: None,
            payload: None,
            flash_gateway: false,
            websocket: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").expect("valid"), b"hello");
        assert_eq!(base64_decode("aGVsbG8").expect("valid"), b"hello");
        assert_eq!(
            base64_decode("AAEC/w==").expect("valid"),
            vec![0, 1, 2, 255]
        );
        assert_eq!(
            base64_decode("a*b").map_err(|e| e.to_string()),
            Err("invalid base64 byte '*'".to_string())
        );
    }
}
