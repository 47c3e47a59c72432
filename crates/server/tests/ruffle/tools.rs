//! The real programs the Ruffle tests drive, found once per test: the
//! Haxe compiler, Chromium, node (with Ruffle and puppeteer-core from
//! `npm ci` here), websockify and openssl.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::scrape::{tool, REQUIRE_TOOLS_ENV};

/// Where everything the tests need is.
pub struct Tools {
    pub haxe: PathBuf,
    pub chromium: PathBuf,
    pub node: PathBuf,
    pub websockify: PathBuf,
    pub openssl: PathBuf,
    /// This directory: `Main.hx`, `run.mjs` and `node_modules`.
    pub dir: PathBuf,
}

impl Tools {
    /// All of them, or `None` after saying which are missing (a failure
    /// under `FLASHPOLICYD_REQUIRE_TOOLS=1`).
    pub fn find() -> Option<Tools> {
        let usr = |name: &str| vec![Path::new("/usr/bin").join(name)];
        let haxe = tool("haxe", &usr("haxe"), "apt-get install haxe");
        let chromium = tool("chromium", &usr("chromium"), "apt-get install chromium");
        let node = tool("node", &usr("node"), "apt-get install nodejs npm");
        let websockify = tool(
            "websockify",
            &usr("websockify"),
            "apt-get install websockify",
        );
        let openssl = tool("openssl", &usr("openssl"), "apt-get install openssl");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ruffle");
        let modules = node_modules(&dir);
        Some(Tools {
            haxe: haxe?,
            chromium: chromium?,
            node: node?,
            websockify: websockify?,
            openssl: openssl?,
            dir: modules.then_some(dir)?,
        })
    }
}

/// Whether `npm ci` has installed Ruffle and puppeteer-core in `dir`; if
/// not, says so (or panics under `FLASHPOLICYD_REQUIRE_TOOLS=1`).
fn node_modules(dir: &Path) -> bool {
    let needed = [
        "node_modules/@ruffle-rs/ruffle/ruffle.js",
        "node_modules/puppeteer-core/package.json",
    ];
    if needed.iter().all(|p| dir.join(p).is_file()) {
        return true;
    }
    let why = format!(
        "Ruffle and puppeteer-core are not installed: run `npm ci` in {}",
        dir.display()
    );
    if std::env::var_os(REQUIRE_TOOLS_ENV).is_some_and(|v| v == "1") {
        panic!("{REQUIRE_TOOLS_ENV}=1, but {why}");
    }
    eprintln!("SKIPPED: {why}");
    false
}

/// Runs `cmd` (no stdin) to its end; panics with its output unless it
/// succeeds.
pub fn run_to_success(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{:?} failed ({}): {}{}",
        cmd.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
