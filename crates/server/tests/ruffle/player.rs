//! The Ruffle side: builds the test's SWF from `Main.hx` with haxe, and
//! plays it in a real Ruffle in headless Chromium (`run.mjs`), returning
//! what the SWF reported to the page.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cert::Cert;
use crate::common::TempFile;
use crate::group::Group;
use crate::tools::{run_to_success, Tools};

/// How long the page may wait for the SWF's last report.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long node may take beyond that (starting Chromium, closing it).
const SLACK: Duration = Duration::from_secs(30);

/// The SWF, compiled into a temporary file.
pub fn build_swf(tools: &Tools, tag: &str) -> TempFile {
    let swf = TempFile::new(&format!("ruffle-{tag}.swf"), b"");
    let mut haxe = Command::new(&tools.haxe);
    haxe.arg("-cp").arg(&tools.dir).args([
        "-swf",
        swf.path(),
        "-swf-version",
        "10",
        "-main",
        "Main",
    ]);
    run_to_success(&mut haxe);
    swf
}

/// What one page run saw.
#[derive(Debug)]
pub struct Outcome {
    /// Whether the SWF reported a final event before the page timed out.
    pub done: bool,
    /// The page's origin (`http://…` or `https://…`).
    pub origin: String,
    /// The SWF's reports, in order: (kind, detail).
    pub reports: Vec<(String, String)>,
    /// The JSON line and node's stderr, for failure messages.
    pub raw: String,
}

impl Outcome {
    /// The detail of the first report of `kind`.
    pub fn first(&self, kind: &str) -> Option<&str> {
        self.reports
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, d)| d.as_str())
    }
}

/// One page: what the SWF connects to and sends, and how Ruffle is set up.
pub struct Page<'a> {
    /// What the SWF's Socket connects to.
    pub target: SocketAddr,
    /// The bridge's URL, in Ruffle's `socketProxy`.
    pub proxy_url: &'a str,
    /// The line the SWF sends.
    pub line: &'a str,
    /// Serve the page over https with this certificate.
    pub tls: Option<&'a Cert>,
    /// Map this host (with the target's port) instead of the target's, to
    /// make Ruffle's lookup miss.
    pub proxy_host: Option<&'a str>,
}

impl<'a> Page<'a> {
    /// A page whose Ruffle maps `target` to `proxy_url`, over http.
    pub fn new(target: SocketAddr, proxy_url: &'a str, line: &'a str) -> Page<'a> {
        Page {
            target,
            proxy_url,
            line,
            tls: None,
            proxy_host: None,
        }
    }
}

/// Plays the SWF in `page`.
pub fn play(tools: &Tools, swf: &TempFile, page: &Page) -> Outcome {
    let mut cmd = Command::new(&tools.node);
    cmd.current_dir(&tools.dir)
        .arg(tools.dir.join("run.mjs"))
        .args(["--swf", swf.path(), "--proxy-url", page.proxy_url])
        .args(["--line", page.line])
        .args(["--host", &page.target.ip().to_string()])
        .args(["--port", &page.target.port().to_string()])
        .args(["--timeout-ms", &PAGE_TIMEOUT.as_millis().to_string()])
        .arg("--chromium")
        .arg(&tools.chromium);
    if let Some(host) = page.proxy_host {
        cmd.args(["--proxy-host", host]);
    }
    if let Some(cert) = page.tls {
        cmd.args(["--tls-cert", cert.cert.path(), "--tls-key", cert.key.path()]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut node = Group::spawn(&mut cmd)
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", tools.node.display()));
    let stdout = reader(node.child().stdout.take());
    let stderr = reader(node.child().stderr.take());
    let status = node.wait_for(PAGE_TIMEOUT + SLACK);
    drop(node);
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let raw = format!("stdout: {stdout}\nstderr: {stderr}");
    // Shown with --nocapture, and with a failing test's output.
    eprintln!("run.mjs printed: {}", stdout.trim_end());
    assert!(status.is_some(), "node run.mjs did not exit in time\n{raw}");
    let json: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON line from run.mjs\n{raw}"));
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let reports = json["reports"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|r| (text(&r["kind"]), text(&r["detail"])))
                .collect()
        })
        .unwrap_or_default();
    Outcome {
        done: json["done"].as_bool().unwrap_or(false),
        origin: text(&json["origin"]),
        reports,
        raw,
    }
}

/// Reads a pipe to its end on a thread of its own.
fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}
