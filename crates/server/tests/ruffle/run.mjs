// Drives a real Ruffle for crates/server/tests/ruffle.rs: serves a page,
// Ruffle's files and the test's SWF from a loopback HTTP(S) server on an
// OS-chosen port, opens the page in headless Chromium through
// puppeteer-core, and waits (bounded) for the SWF's last report.
//
// Usage:
//   node run.mjs --swf FILE --host HOST --port PORT --proxy-url URL
//                [--line TEXT] [--proxy-host HOST] [--tls-cert PEM --tls-key PEM]
//                [--timeout-ms N] [--chromium PATH]
//
// HOST:PORT is what the SWF's flash.net.Socket connects to; Ruffle's
// socketProxy maps exactly that pair to the WebSocket URL (or, with
// --proxy-host, PROXY_HOST:PORT instead, to see a lookup miss). With a
// certificate, the page is served over https (and Chromium trusts the
// test's self-signed certificate for the page and the wss:// bridge:
// puppeteer's acceptInsecureCerts, which covers WebSockets too).
//
// Prints one JSON line on stdout:
//   {"done":bool,"origin":..,"reports":[{"kind":..,"detail":..}],"console":[..]}
// Exit status: 0 once the SWF reported a final event, 2 on timeout, 1 on
// any other failure.

import { readFileSync } from "node:fs";
import { createServer as createHttp } from "node:http";
import { createServer as createHttps } from "node:https";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const RUFFLE_DIR = join(HERE, "node_modules", "@ruffle-rs", "ruffle");

// The SWF's reports after which nothing more is awaited.
const FINAL = new Set(["echo", "close", "ioerror", "securityerror", "error"]);

// At most this many console lines are kept for the report.
const MAX_CONSOLE = 50;

function parseArgs(argv) {
  const opts = { line: "hello from ruffle", timeoutMs: 20000, chromium: "/usr/bin/chromium" };
  const names = {
    "--swf": "swf",
    "--host": "host",
    "--port": "port",
    "--proxy-url": "proxyUrl",
    "--line": "line",
    "--proxy-host": "proxyHost",
    "--tls-cert": "tlsCert",
    "--tls-key": "tlsKey",
    "--timeout-ms": "timeoutMs",
    "--chromium": "chromium",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) throw new Error(`bad argument: ${argv[i]}`);
    opts[key] = argv[i + 1];
  }
  for (const required of ["swf", "host", "port", "proxyUrl"]) {
    if (!opts[required]) throw new Error(`missing --${required}`);
  }
  opts.port = Number(opts.port);
  opts.timeoutMs = Number(opts.timeoutMs);
  return opts;
}

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".swf": "application/x-shockwave-flash",
};

function mimeOf(path) {
  const dot = path.lastIndexOf(".");
  return MIME[dot >= 0 ? path.slice(dot) : ""] ?? "application/octet-stream";
}

function page(opts) {
  const config = {
    socketProxy: [{ host: opts.proxyHost ?? opts.host, port: opts.port, proxyUrl: opts.proxyUrl }],
    allowScriptAccess: true,
    autoplay: "on",
    unmuteOverlay: "hidden",
    splashScreen: false,
    preferredRenderer: "canvas",
    publicPath: "/ruffle/",
    logLevel: "warn",
  };
  const flashvars = { host: opts.host, port: String(opts.port), line: opts.line };
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>flashpolicy ruffle test</title>
<script>
window.flashpolicyReports = [];
window.flashpolicyReport = (kind, detail) => {
  window.flashpolicyReports.push({ kind: String(kind), detail: String(detail) });
};
window.RufflePlayer = { config: ${JSON.stringify(config)} };
</script>
<script src="/ruffle/ruffle.js"></script>
</head><body><div id="stage"></div>
<script>
window.addEventListener("load", () => {
  const player = window.RufflePlayer.newest().createPlayer();
  player.style.width = "200px";
  player.style.height = "100px";
  document.getElementById("stage").appendChild(player);
  player.ruffle().load({ url: "/main.swf", parameters: ${JSON.stringify(flashvars)} })
    .catch((e) => window.flashpolicyReport("error", "load: " + e));
});
</script>
</body></html>`;
}

function serve(opts) {
  const swf = readFileSync(opts.swf);
  const html = page(opts);
  const handler = (req, res) => {
    const path = new URL(req.url, "http://unused").pathname;
    let body = null;
    if (path === "/favicon.ico") {
      res.writeHead(204).end();
      return;
    }
    if (path === "/") body = html;
    else if (path === "/main.swf") body = swf;
    else if (path.startsWith("/ruffle/") && /^[\w.-]+$/.test(path.slice(8))) {
      try {
        body = readFileSync(join(RUFFLE_DIR, path.slice(8)));
      } catch {
        body = null;
      }
    }
    if (body === null) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": mimeOf(path === "/" ? ".html" : path) }).end(body);
  };
  const server = opts.tlsCert
    ? createHttps({ cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey) }, handler)
    : createHttp(handler);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const result = { done: false, origin: null, reports: [], console: [] };
  const server = await serve(opts);
  const scheme = opts.tlsCert ? "https" : "http";
  result.origin = `${scheme}://127.0.0.1:${server.address().port}`;
  let browser = null;
  const deadline = Date.now() + opts.timeoutMs;
  try {
    browser = await puppeteer.launch({
      executablePath: opts.chromium,
      headless: true,
      acceptInsecureCerts: Boolean(opts.tlsCert),
      // CI runs as root, where Chromium's sandbox cannot start; a
      // container's /dev/shm may be too small for it.
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
      timeout: opts.timeoutMs,
    });
    const tab = await browser.newPage();
    tab.on("console", (msg) => {
      if (result.console.length < MAX_CONSOLE) result.console.push(`${msg.type()}: ${msg.text()}`);
    });
    tab.on("pageerror", (e) => {
      if (result.console.length < MAX_CONSOLE) result.console.push(`pageerror: ${e.message}`);
    });
    await tab.goto(`${result.origin}/`, { timeout: opts.timeoutMs });
    while (Date.now() < deadline) {
      result.reports = await tab.evaluate(() => window.flashpolicyReports);
      if (result.reports.some((r) => FINAL.has(r.kind))) {
        result.done = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
    server.close();
  }
  process.stdout.write(JSON.stringify(result) + "\n");
  return result.done ? 0 : 2;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stdout.write(JSON.stringify({ done: false, error: String(e?.stack ?? e) }) + "\n");
    process.exit(1);
  },
);
