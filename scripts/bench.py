#!/usr/bin/env python3
"""The flashpolicy benchmark: what one served connection costs each engine.

Run it through scripts/bench.sh (see `scripts/bench.sh --help`). It builds
release binaries, then runs flashpolicy-loadgen against each server row:

  flashpolicyd --backend epoll | uring | uring --send-zc, at 1 thread and at
  all cores; epoll and uring with --defer-accept at 1 thread; the kernel floor (crates/server/examples/kernel_floor.rs, accept
  and close, nothing else); nginx (stream `return`) and node's `policyfile`
  when installed (scripts/peers-setup.sh).

Scenarios per row: closed loop at 64 and 1,024 connections; open loop at a
fixed rate; N idle connections held while good clients are served at that
rate. Rows are measured in alternation (A B C A B C ...) and each figure is
the median of the rounds, with min-max.

Every run's figures go to benches/results/<date>-<host>.json; the tables
(.md) and README.md's Performance block are rendered from that record alone,
so `--render-only` can redraw them from a committed run without measuring.
Method, columns and caveats: benches/README.md.

Server CPU per connection = the server process's utime+stime (/proc/PID/stat)
over the measured window / successful connections in it. Nothing but the
standard library: python3 >= 3.8 and Linux /proc.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "scripts", "peers")
POLICY = os.path.join(PEERS, "policy.xml")
RESULTS = os.path.join(ROOT, "benches", "results")
README = os.path.join(ROOT, "README.md")
SOURCES = "127.0.0.2-127.0.0.254"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ERROR_KINDS = [
    "connect", "reset", "timeout", "bad_response", "ports_exhausted", "local_limit", "io",
]
# The server's --timeout: idle clients must stay open for the whole idle scenario.
SERVER_TIMEOUT = "30s"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- settings


def parse_args():
    p = argparse.ArgumentParser(
        prog="scripts/bench.sh",
        description="Benchmark flashpolicyd's engines against the kernel floor and peers.",
    )
    p.add_argument("--smoke", action="store_true",
                   help="a few seconds: tiny runs, one round, no peers, debug build; "
                        "fails on any error or zero successes (CI)")
    p.add_argument("--rounds", type=int, help="rounds of alternation (default 3)")
    p.add_argument("--duration", type=float, help="seconds measured per run (default 2)")
    p.add_argument("--warmup", type=float, help="seconds of unmeasured load before each run (default 0.5)")
    p.add_argument("--rate", type=float, help="open loop connections/s, below saturation (default 5000)")
    p.add_argument("--idle", type=int, help="idle connections held in the idle scenario (default 10000)")
    p.add_argument("--only", help="comma list of row ids to run (e.g. epoll-1,floor); see --list")
    p.add_argument("--list", action="store_true", help="print the row ids and exit")
    p.add_argument("--no-peers", action="store_true", help="skip nginx and node")
    p.add_argument("--no-build", action="store_true", help="use binaries already built")
    p.add_argument("--out", help="results directory (default benches/results; --smoke and --only: "
                                 "a temp dir)")
    p.add_argument("--render-only", nargs="?", const="", metavar="JSON",
                   help="measure nothing: redraw benches/results/latest.md and README.md's "
                        "Performance block from JSON (default benches/results/latest.json, else "
                        "the newest full run there)")
    a = p.parse_args()
    defaults = dict(rounds=3, duration=2.0, warmup=0.5, rate=5000.0, idle=10000)
    if a.smoke:
        defaults = dict(rounds=1, duration=0.3, warmup=0.0, rate=1000.0, idle=200)
        a.no_peers = True
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


def cpu_layout():
    """(generator CPUs, the server's CPU or None, all CPUs)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not shutil.which("taskset"):
        return None, None, cpus
    # The server's 1-thread rows get the last CPU, the generator the rest
    # (on 2 cores: generator on CPU 0, server on CPU 1).
    return cpus[:-1], cpus[-1], cpus


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    def git(*args):
        r = subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", "crates", "loadgen"):
        commit += " + uncommitted changes"
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "host": socket.gethostname().split(".")[0],
        "commit": commit,
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "busy": machine_busy(),
    }


def machine_busy(seconds=1.0):
    """Fraction of all CPUs busy over a moment, before any server runs: other
    work on the machine makes every figure noisier."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v[:8]), v[3] + v[4]
    (t0, i0), _ = sample(), time.sleep(seconds)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


# ---------------------------------------------------------------- build


def build(smoke, no_build):
    """Builds flashpolicyd, the kernel floor and the generator; returns their paths."""
    profile = "debug" if smoke else "release"
    if not no_build:
        cmd = ["cargo", "build", "--locked", "-p", "flashpolicy-server", "-p", "flashpolicy-loadgen",
               "--bin", "flashpolicyd", "--bin", "flashpolicy-loadgen", "--example", "kernel_floor"]
        if not smoke:
            cmd.insert(2, "--release")
        log("building: " + " ".join(cmd))
        subprocess.run(cmd, cwd=ROOT, check=True)
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=ROOT, check=True, capture_output=True, text=True)
    target = os.path.join(json.loads(meta.stdout)["target_directory"], profile)
    bins = {
        "server": os.path.join(target, "flashpolicyd"),
        "floor": os.path.join(target, "examples", "kernel_floor"),
        "loadgen": os.path.join(target, "flashpolicy-loadgen"),
    }
    for name, path in bins.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {path} missing; build it or drop --no-build")
    return bins


# ---------------------------------------------------------------- servers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_row(workdir):
    """nginx with the stream module, or the reason it cannot run here."""
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if not nginx:
        return None, "nginx not installed (scripts/peers-setup.sh nginx)"
    info = subprocess.run([nginx, "-V"], capture_output=True, text=True).stderr
    load = ""
    if "--with-stream=dynamic" in info:
        mods = [os.path.join(d, "ngx_stream_module.so")
                for d in ("/usr/lib/nginx/modules", "/usr/lib64/nginx/modules",
                          "/usr/share/nginx/modules", "/usr/local/nginx/modules")]
        found = next((m for m in mods if os.path.exists(m)), None)
        if not found:
            return None, "nginx has no stream module (Debian: libnginx-mod-stream)"
        load = f"load_module {found};"
    elif "--with-stream" not in info:
        return None, "nginx built without the stream module"
    port = free_port()
    soft, hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
    nofile = hard if hard != -1 else 65536
    with open(POLICY, "rb") as f:
        policy = f.read()
    # nginx's quoted strings take \" and \\ escapes; the NUL goes in raw.
    policy = policy.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b"\0"
    if b"$" in policy:
        return None, "the policy contains '$', which nginx would read as a variable"
    with open(os.path.join(PEERS, "nginx-stream.conf"), "rb") as f:
        conf = b"".join(l for l in f if not l.lstrip().startswith(b"#"))  # comments name the @KEYS@
    for k, v in {"@LOAD_MODULE@": load, "@NOFILE@": str(nofile), "@DIR@": workdir,
                 "@CONNECTIONS@": str(max(1024, nofile - 64)),
                 "@LISTEN@": f"127.0.0.1:{port}"}.items():
        conf = conf.replace(k.encode(), v.encode())
    conf = conf.replace(b"@POLICY@", policy)
    path = os.path.join(workdir, "nginx.conf")
    with open(path, "wb") as f:
        f.write(conf)
    return {"argv": [nginx, "-p", workdir, "-c", path], "port": port}, None


def node_row():
    node = shutil.which("node")
    if not node:
        return None, "node not installed"
    if not os.path.isdir(os.path.join(PEERS, "node_modules", "policyfile")):
        return None, "npm package policyfile not installed (scripts/peers-setup.sh node)"
    port = free_port()
    return {"argv": [node, os.path.join(PEERS, "policyfile-server.js"), str(port)], "port": port}, None


def rows(bins, cfg, layout, workdir):
    """Every row: id, label, argv (or skip reason), pinned CPU, kind, and the
    scenarios it skips (none unless said)."""
    _, server_cpu, cpus = layout
    n = len(cpus)
    out = []
    base = [bins["server"], "--listen", "127.0.0.1:0", "--policy", POLICY, "--timeout", SERVER_TIMEOUT]
    # (id, label, extra flags, at all cores too, scenarios skipped at all cores)
    engines = [
        ("epoll", "epoll", [], True, ()),
        ("epoll-da", "epoll --defer-accept", ["--defer-accept"], False, ()),
        ("uring", "uring", [], True, ()),
        ("uring-da", "uring --defer-accept", ["--defer-accept"], False, ()),
        # Zero-copy send changes how the reply leaves, not how idle clients
        # are held: the 1-thread row covers it, so the all-cores row skips
        # the idle scenario (the suite's costliest) to stay under 10 minutes.
        ("uring-zc", "uring --send-zc", ["--send-zc"], True, ("idle",)),
    ]
    for threads, pinned in ((1, True), (n, False)):
        if threads > 1 and (n == 1 or cfg.smoke):
            continue
        for eid, label, extra, all_cores, skips in engines:
            if threads > 1 and not all_cores:
                continue
            be = "uring" if eid.startswith("uring") else "epoll"
            out.append(dict(id=f"{eid}-{threads}", label=f"flashpolicyd {label}, {threads} thr",
                            argv=base + ["--backend", be, "--threads", str(threads)] + extra,
                            cpu=server_cpu if pinned else None, kind="engine",
                            defer="--defer-accept" in extra,
                            skip_scenarios=list(skips) if threads > 1 else []))
    out.append(dict(id="floor", label="kernel floor, 1 thr",
                    argv=[bins["floor"], "--listen", "127.0.0.1:0", "--threads", "1"],
                    cpu=server_cpu, kind="floor", defer=False, skip_scenarios=[]))
    if not cfg.no_peers:
        for pid, label, (row, why) in (("nginx", "nginx stream return", nginx_row(workdir)),
                                        ("node", "node policyfile", node_row())):
            if row:
                out.append(dict(id=pid, label=label, argv=row["argv"], port=row["port"],
                                cpu=server_cpu, kind="peer", defer=False, skip_scenarios=[]))
            else:
                out.append(dict(id=pid, label=label, skip=why, kind="peer"))
    return out


def taskset(cpus):
    if cpus is None:
        return []
    return ["taskset", "-c", ",".join(str(c) for c in cpus)]


class Server:
    """One running server process."""

    def __init__(self, row, workdir):
        self.row = row
        self.errlog = os.path.join(workdir, f"{row['id']}.stderr")
        cpu = [row["cpu"]] if row["cpu"] is not None else None
        with open(self.errlog, "wb") as err:
            self.proc = subprocess.Popen(taskset(cpu) + row["argv"], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        self.addr = self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}: {self.stderr_tail()}")
            if "port" in self.row:
                try:
                    socket.create_connection(("127.0.0.1", self.row["port"]), timeout=0.2).close()
                    return f"127.0.0.1:{self.row['port']}"
                except OSError:
                    pass
            else:
                with open(self.errlog, errors="replace") as f:
                    m = re.search(r"listening on (\S+)", f.read())
                if m:
                    return m.group(1)
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"not ready within 10 s: {self.stderr_tail()}")

    def stderr_tail(self):
        try:
            with open(self.errlog, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            return ""

    def cpu_ticks(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, all threads

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def reset_peak_rss(self):
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass

    def peak_rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def core_irq(cpu):
    """Interrupt and softirq ticks of one CPU (/proc/stat): on loopback most of
    TCP's work runs there and is charged to no process."""
    if cpu is None:
        return None
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return v[5] + v[6]
    return None


# ---------------------------------------------------------------- scenarios


def scenarios(cfg):
    r = f"{cfg.rate:g}"
    return [
        ("c64", "closed loop, 64 connections", ["--connections", "64"]),
        ("c1024", "closed loop, 1,024 connections", ["--connections", "1024"]),
        ("open", f"open loop, {cfg.rate:,.0f} connections/s", ["--rate", r]),
        ("idle", f"{cfg.idle:,} idle connections held, good clients at {cfg.rate:,.0f}/s",
         ["--rate", r]),
    ]


def loadgen(bins, gen_cpus, target, args, duration, out_json=None, out_log=None, wait=True):
    cmd = taskset(gen_cpus) + [bins["loadgen"], *args, "--duration", f"{duration}s",
                               "--source", SOURCES, "--quiet"]
    if out_json:
        cmd += ["--json", out_json]
    if out_log:
        cmd += ["--log", out_log]
    cmd.append(target)
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"loadgen failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    return r


def socket_fds(pid):
    """How many sockets process pid has open."""
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            except OSError:
                pass
    except OSError:
        pass
    return n


def hold_idle(bins, gen_cpus, server, cfg):
    """Opens cfg.idle idle connections. Returns (holder process, how many the
    server process holds, how many the holder has open)."""
    base = server.open_fds()
    rate = max(1000.0, min(20000.0, cfg.idle * 4.0))
    holder = subprocess.Popen(
        taskset(gen_cpus) + [bins["loadgen"], "--scenario", "idle", "--rate", f"{rate:g}",
                             "--count", str(cfg.idle), "--timeout", "120s", "--source", SOURCES,
                             "--quiet", server.addr],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5 + cfg.idle / rate * 2
    time.sleep(min(0.5, cfg.idle / rate))
    # Counted on the client's side: with --defer-accept the kernel holds idle
    # connections that the server process never sees.
    while time.monotonic() < deadline:
        if socket_fds(holder.pid) >= cfg.idle or holder.poll() is not None:
            break
        time.sleep(0.1)
    time.sleep(0.2)
    return holder, max(0, server.open_fds() - base), socket_fds(holder.pid)


def measure(bins, layout, server, row, scen, cfg, rdir, tag):
    sid, _, args = scen
    gen_cpus = layout[0]
    holder, held, connected = None, None, None
    try:
        if sid == "idle":
            holder, held, connected = hold_idle(bins, gen_cpus, server, cfg)
        if cfg.warmup > 0:
            loadgen(bins, gen_cpus, server.addr, args, cfg.warmup)
        out_json = os.path.join(rdir, f"{tag}.json")
        out_log = os.path.join(rdir, f"{tag}.hlog")
        server.reset_peak_rss()
        t0, c0 = server.cpu_ticks(), core_irq(row["cpu"])
        loadgen(bins, gen_cpus, server.addr, args, cfg.duration, out_json, out_log)
        t1, c1 = server.cpu_ticks(), core_irq(row["cpu"])
        peak = server.peak_rss_kb()
    finally:
        if holder:
            holder.kill()
            holder.wait()
    with open(out_json) as f:
        j = json.load(f)
    # flashpolicyd: per connection served correctly. The floor and the peers
    # (which reply before reading, so most of their clients see a reset):
    # per connection the clients finished, whatever the outcome (marked †).
    per_ok = row["kind"] == "engine"
    den = j["ok"] if per_ok else j.get("connections_finished", 0)
    us = lambda ticks: ticks / CLK_TCK * 1e6 / den if den else None
    lat = j["latency_us"]["total"]
    return {
        "ok": j["ok"], "finished": j.get("connections_finished", 0),
        "per_ok": per_ok,
        "throughput": j["throughput_per_sec"] if per_ok
        else den / j["duration_s"] if j.get("duration_s") else 0.0,
        "errors": {k: j["errors"].get(k, 0) for k in ERROR_KINDS},
        "p50": lat["p50"], "p99": lat["p99"], "p99_9": lat["p99_9"], "max": lat["max"],
        "cpu_us": us(t1 - t0),
        "core_us": us(t1 - t0 + c1 - c0) if c0 is not None else None,
        "gen_cpu_us": j.get("generator_cpu_us_per_conn"),
        "gen_user_us": j.get("generator_cpu_user_us_per_conn"),
        # Share of the generator's CPUs it kept busy: near 1, it is the bottleneck.
        "gen_busy": (j["generator_cpu_s"] / j["duration_s"] / len(gen_cpus or layout[2]))
        if j.get("generator_cpu_s") and j.get("duration_s") else None,
        "duration_s": j.get("duration_s"),
        "peak_rss_kb": peak,
        "held": held,
        "idle_connected": connected,
        "first_errors": j.get("first_errors", {}),
        "hlog": out_log,
    }


# ---------------------------------------------------------------- report
#
# Everything below renders one run record (the JSON that main() writes, or a
# committed one read back with --render-only); nothing here measures.


def med(values):
    v = [x for x in values if x is not None]
    return (statistics.median(v), min(v), max(v)) if v else None


def fmt(m, digits=1, ranged=True, unit=""):
    if m is None:
        return "–"
    f = lambda x: f"{x:,.{digits}f}"
    if not ranged or m[1] == m[2]:
        return f(m[0]) + unit
    return f"{f(m[0])} ({f(m[1])}–{f(m[2])}){unit}"


def errors_text(runs):
    tot = {k: sum(r["errors"].get(k, 0) for r in runs) for k in ERROR_KINDS}
    parts = [f"{k} {v:,}" for k, v in tot.items() if v]
    return ", ".join(parts) if parts else "0"


def normalize(rec):
    """Fills in what records written before a field existed lack, so that
    every record renders the same way."""
    st = rec.setdefault("settings", {})
    st.setdefault("smoke", False)
    for rid, r in rec["rows"].items():
        r.setdefault("kind", "floor" if rid == "floor"
                     else "peer" if rid in ("nginx", "node") else "engine")
        r.setdefault("defer", "--defer-accept" in (r.get("argv") or []))
        r.setdefault("skip_scenarios", [])
    if "layout" not in rec:
        server = next((r["cpu"] for r in rec["rows"].values() if r.get("cpu") is not None), None)
        cpus = list(range(rec["machine"].get("cpus") or 1))
        rec["layout"] = {"generator": [c for c in cpus if c != server] if server is not None else None,
                         "server": server, "cpus": cpus}
    ngen = len(rec["layout"]["generator"] or rec["layout"]["cpus"])
    for res in rec["results"].values():
        for runs in res.values():
            for x in runs:
                if x.get("gen_busy") is None and x.get("gen_cpu_us") and x.get("finished"):
                    x["gen_busy"] = (x["gen_cpu_us"] * x["finished"] / 1e6
                                     / (x.get("duration_s") or st["duration"]) / ngen)
    return rec


class View:
    """Medians and ratios over one record."""

    def __init__(self, rec):
        self.rec = normalize(rec)
        self.st = rec["settings"]
        self.mach = rec["machine"]
        self.layout = rec["layout"]
        self.res = rec["results"]
        self.rows = [dict(r, id=rid) for rid, r in rec["rows"].items()]
        self.ran = [r for r in self.rows if not r.get("skip") and self.res.get(r["id"])]
        self.scens = scenarios(argparse.Namespace(**self.st))

    def runs(self, rid, sid):
        return self.res.get(rid, {}).get(sid, [])

    def m(self, rid, sid, key, ok_only=False, scale=1.0):
        return med([x[key] * scale if x.get(key) is not None else None
                    for x in self.runs(rid, sid) if x["ok"] or not ok_only])

    def cpu(self, rid, sid):
        return self.m(rid, sid, "cpu_us")

    def ratio(self, rid, sid):
        a, b = self.cpu(rid, sid), self.cpu("floor", sid)
        return f"{a[0] / b[0]:.2f}×" if a and b and b[0] > 0 else "–"

    def mark(self, rid, sid):
        return "" if all(x["per_ok"] for x in self.runs(rid, sid)) else " †"

    def rounds(self, sid):
        return max([len(self.runs(r["id"], sid)) for r in self.ran] or [0])


def machine_line(v):
    m = v.mach
    return (f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['kernel']}, host `{m['host']}`; "
            f"commit {m['commit']}; CPUs {m['busy']:.0%} busy just before the run"
            f"{' (other work was running: expect noise)' if m['busy'] > 0.1 else ''}.")


def glance(v):
    st = v.st
    lines = [
        "| server | CPU µs per connection (64 conns) | × kernel floor | connections/s (64 conns) "
        f"| p99 µs at {st['rate']:,.0f}/s | p99 µs with {st['idle']:,} idle | peak RSS with idle "
        "| errors (all runs) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in v.ran:
        rid = r["id"]
        all_runs = [x for s in v.res[rid].values() for x in s]
        lines.append(
            f"| {r['label']} | {fmt(v.cpu(rid, 'c64'), 2)}{v.mark(rid, 'c64')} | {v.ratio(rid, 'c64')} "
            f"| {fmt(v.m(rid, 'c64', 'throughput'), 0)} "
            f"| {fmt(v.m(rid, 'open', 'p99', True), 0, False)} "
            f"| {fmt(v.m(rid, 'idle', 'p99', True), 0, False)} "
            f"| {fmt(v.m(rid, 'idle', 'peak_rss_kb', scale=1 / 1024), 1, False, ' MiB')} "
            f"| {errors_text(all_runs)} |")
    return lines


def verdict(v, sid="c64"):
    """One generated sentence: which engine costs least, and whether the
    difference is larger than the noise between rounds."""
    engines = [(v.cpu(r["id"], sid), r["label"]) for r in v.ran if r["kind"] == "engine"]
    engines = sorted((m, name) for m, name in engines if m)
    if not engines:
        return ""
    floor = v.cpu("floor", sid)
    (best, name), worst, rounds = engines[0], engines[-1][0], v.rounds(sid)
    text = (f"Engines at 64 connections cost {best[0]:.1f}–{worst[0]:.1f} µs of server CPU per "
            "connection")
    if floor and floor[0] > 0:
        text += f" ({best[0] / floor[0]:.2f}–{worst[0] / floor[0]:.2f}× the kernel floor)"
    if rounds < 3:
        text += f"; {rounds} round(s) only, too few to tell a difference from noise."
    elif len(engines) > 1 and best[2] < min(m[1] for m, _ in engines[1:]):
        text += f"; the cheapest, {name}, is below every other engine in every round."
    else:
        text += (f"; the lowest median is {name}'s, but the engines' min–max ranges overlap: "
                 "on this machine their difference is within the noise.")
    return text


def defer_sentence(v, sid="c64"):
    """One generated sentence: what --defer-accept changes at 1 thread."""
    parts, apart = [], []
    for base in ("epoll", "uring"):
        a, b = v.cpu(f"{base}-1", sid), v.cpu(f"{base}-da-1", sid)
        if a and b:
            parts.append(f"{base} {a[0]:.1f} → {b[0]:.1f} µs ({b[0] - a[0]:+.1f})")
            apart.append(b[2] < a[1] or a[2] < b[1])
    if not parts:
        return ""
    text = "With `--defer-accept`, 1 thread, 64 connections: " + ", ".join(parts) + " per connection"
    if v.rounds(sid) < 3:
        return text + f"; {v.rounds(sid)} round(s) only, too few to tell from noise."
    if all(apart):
        return text + "; every change is larger than the spread between rounds."
    return text + "; where the min–max ranges overlap, the change is within the noise."


def generator_sentence(v, sid="c64"):
    """One generated sentence: is the load generator the bottleneck?"""
    gen_cpus = v.layout["generator"]
    engines = [r for r in v.ran if r["kind"] == "engine"]
    per = [v.m(r["id"], sid, "gen_cpu_us") for r in engines]
    busy = [v.m(r["id"], sid, "gen_busy") for r in engines]
    rel = []
    for r, g in zip(engines, per):
        s = v.cpu(r["id"], sid)
        if g and s and s[0] > 0:
            rel.append(g[0] / s[0])
    per, busy = [p[0] for p in per if p], [b[0] for b in busy if b]
    if not per or not busy:
        return ""
    where = (f"pinned to CPU {','.join(map(str, gen_cpus))}" if gen_cpus
             else "unpinned")
    text = (f"The load generator ({where}) spent {min(per):.1f}–{max(per):.1f} µs of CPU per "
            f"connection at 64 connections")
    if rel:
        text += f", {min(rel):.1f}–{max(rel):.1f}× the server's"
    span = (f"{min(busy):.0%}" if f"{min(busy):.0%}" == f"{max(busy):.0%}"
            else f"{min(busy):.0%}–{max(busy):.0%}")
    text += f", and kept its CPU {span} busy: "
    if min(busy) >= 0.9:
        text += ("in closed loop the generator is the bottleneck, so connections/s there measures "
                 "the generator; compare the servers by CPU per connection.")
    elif max(busy) < 0.75:
        text += "the generator is not the bottleneck."
    else:
        text += ("it is near saturation in some runs, so closed-loop connections/s is partly the "
                 "generator's limit; compare the servers by CPU per connection.")
    return text


def scenario_tables(v):
    lines = []
    for sid, title, _ in v.scens:
        idle = sid == "idle"
        lines += [
            f"## {title}",
            "",
            "| server | connections/s | server CPU µs/conn | × floor | + softirq µs/conn "
            "| generator CPU µs/conn | p50 µs | p99 µs | p99.9 µs | errors | peak RSS MiB |"
            + (" idle held |" if idle else ""),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|" + ("---:|" if idle else ""),
        ]
        for r in v.ran:
            rid, runs = r["id"], v.runs(r["id"], sid)
            if not runs:
                continue
            row = (f"| {r['label']} | {fmt(v.m(rid, sid, 'throughput'), 0)} "
                   f"| {fmt(v.cpu(rid, sid), 2)}{v.mark(rid, sid)} | {v.ratio(rid, sid)} "
                   f"| {fmt(v.m(rid, sid, 'core_us'), 2)} "
                   f"| {fmt(v.m(rid, sid, 'gen_cpu_us'), 1)} "
                   f"| {fmt(v.m(rid, sid, 'p50', True), 0, False)} "
                   f"| {fmt(v.m(rid, sid, 'p99', True), 0)} "
                   f"| {fmt(v.m(rid, sid, 'p99_9', True), 0, False)} "
                   f"| {errors_text(runs)} "
                   f"| {fmt(v.m(rid, sid, 'peak_rss_kb', scale=1 / 1024), 1, False)} |")
            if idle:
                held = fmt(v.m(rid, sid, "held"), 0, False)
                conn = v.m(rid, sid, "idle_connected")
                if r["defer"] and conn:
                    held += f" of {conn[0]:,.0f} ‡"
                row += f" {held} |"
            lines.append(row)
        lines.append("")
    return lines


def first_errors(v):
    notes = []
    for r in v.ran:
        first = {}
        for runs in v.res[r["id"]].values():
            for x in runs:
                for k, msg in x["first_errors"].items():
                    first.setdefault(k, msg)
        if first:
            notes.append(f"- {r['label']}: " + "; ".join(f"{k}: {m}" for k, m in first.items()))
    return ["First error of each kind, as the generator reported it:", ""] + notes + [""] if notes else []


def render_tables(rec, plot_name):
    """The full tables: benches/results/<date>-<host>.md and latest.md."""
    v = View(rec)
    st, lay = v.st, v.layout
    took = f" The suite took {rec['elapsed_s'] / 60:.1f} min, build excluded." if rec.get("elapsed_s") else ""
    lines = [
        f"# flashpolicy benchmark, {v.mach['when']}",
        "",
        machine_line(v) + "  ",
        f"Command: `scripts/bench.sh{' --smoke' if st['smoke'] else ''}`: {st['rounds']} round(s) in "
        f"alternation (every row once per round), {st['duration']:g} s measured per run after "
        f"{st['warmup']:g} s of warm-up; median of the rounds, (min–max) where they differ.{took}  ",
    ]
    if lay["server"] is not None:
        lines.append(
            f"Pinning: the generator on CPU {','.join(map(str, lay['generator']))}; 1-thread rows, the "
            f"floor and the peers on CPU {lay['server']}; {len(lay['cpus'])}-thread rows unpinned "
            "(they share the generator's CPU).  ")
    else:
        lines.append("Pinning: none (fewer than 2 CPUs, or no taskset).  ")
    lines.append(f"Client source addresses {SOURCES}; server `--timeout {SERVER_TIMEOUT}`; "
                 "policy `scripts/peers/policy.xml`.  ")
    for r in v.rows:
        if r.get("skip"):
            lines.append(f"Skipped {r['label']}: {r['skip']}.  ")
    for r in v.ran:
        if r["skip_scenarios"]:
            lines.append(f"Not run for {r['label']}: {', '.join(r['skip_scenarios'])} (to keep the "
                         "suite short; see the method).  ")
    lines += [
        "What every row and column means (†, ‡ included) and how it is measured: "
        "[benches/README.md](../README.md).",
        "",
        "## At a glance",
        "",
        *glance(v),
        "",
        " ".join(x for x in (verdict(v), defer_sentence(v)) if x),
        "",
        generator_sentence(v),
        "",
        *scenario_tables(v),
        *first_errors(v),
    ]
    if plot_name:
        lines += [f"![Total latency by percentile, open loop at {st['rate']:,.0f}/s]({plot_name})", ""]
    return "\n".join(lines)


def render_block(rec, source):
    """README.md's generated Performance block: the summary, the plot, a link
    to the full tables."""
    v = View(rec)
    st = v.st
    lines = [
        f"<!-- generated by scripts/bench.py from {source}; edit the script, not this block -->",
        f"Latest run: {v.mach['when']}, {st['rounds']} round{'s' if st['rounds'] != 1 else ''}, "
        "median (min–max). "
        + machine_line(v),
        "",
        *glance(v),
        "",
        "† divided by every connection the clients finished (the floor's and the peers' clients "
        "mostly see a reset).",
        "",
        " ".join(x for x in (verdict(v), defer_sentence(v)) if x),
        "",
        generator_sentence(v),
        "",
        f"![Total latency by percentile, open loop at {st['rate']:,.0f}/s](benches/results/latest.svg)",
        "",
        "Every scenario in full (1,024 connections, softirq, generator CPU, p50/p99.9, idle "
        "connections held, first errors): [benches/results/latest.md](benches/results/latest.md).",
    ]
    return "\n".join(lines)


def plot(bins, ran, results, sid, out_svg, title, workdir):
    files, labels = [], []
    for r in ran:
        runs = [x for x in results.get(r["id"], {}).get(sid, []) if x["ok"] > 0]
        if not runs:
            continue
        hgrm = os.path.join(workdir, f"{r['id']}-{sid}.hgrm")
        m = subprocess.run([bins["loadgen"], "merge", *[x["hlog"] for x in runs], "--hgrm", hgrm],
                           capture_output=True, text=True)
        if m.returncode == 0:
            files.append(hgrm)
            labels.append(r["label"])
        else:
            log(f"merge for {r['id']} failed: {m.stderr.strip()}")
    if not files:
        return False
    cmd = [bins["loadgen"], "plot", *files, "-o", out_svg, "--title", title]
    for label in labels:
        cmd += ["--label", label]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        log(f"plot failed: {p.stderr.strip()}")
    return p.returncode == 0


def update_readme(block):
    """Replaces what lies between README.md's bench markers, and nothing else."""
    with open(README) as f:
        doc = f.read()
    a, b = doc.find(BEGIN), doc.find(END)
    if a < 0 or b < a:
        sys.exit(f"bench: {README} has no {BEGIN} ... {END} markers; not updated")
    new = doc[:a + len(BEGIN)] + "\n" + block.strip() + "\n" + doc[b:]
    if new != doc:
        with open(README, "w") as f:
            f.write(new)


def latest_record(path):
    """The record --render-only draws: PATH, else latest.json, else the newest
    full (not --only, not smoke) run in benches/results."""
    if path:
        return path
    latest = os.path.join(RESULTS, "latest.json")
    if os.path.exists(latest):
        return latest
    best = None
    for name in os.listdir(RESULTS):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(RESULTS, name)) as f:
                rec = json.load(f)
            when = rec["machine"]["when"]
        except (OSError, ValueError, KeyError):
            continue
        if rec.get("settings", {}).get("smoke") or rec.get("only"):
            continue
        if best is None or when > best[0]:
            best = (when, os.path.join(RESULTS, name))
    if best is None:
        sys.exit(f"bench: no run record in {RESULTS}; run scripts/bench.sh first")
    return best[1]


def render_only(path):
    path = latest_record(path)
    with open(path) as f:
        rec = json.load(f)
    have_plot = os.path.exists(os.path.join(RESULTS, "latest.svg"))
    out = os.path.join(RESULTS, "latest.md")
    with open(out, "w") as f:
        f.write(render_tables(rec, "latest.svg" if have_plot else None))
    update_readme(render_block(rec, os.path.relpath(path, ROOT)))
    log(f"rendered {os.path.relpath(path, ROOT)} into {os.path.relpath(out, ROOT)} and README.md")
    return 0


# ---------------------------------------------------------------- main


def smoke_failures(all_rows, results, cfg):
    bad = []
    for r in all_rows:
        if r.get("skip") or r["kind"] == "peer":
            continue
        res = results.get(r["id"])
        if not res:
            bad.append(f"{r['id']}: no result")
            continue
        for sid, runs in res.items():
            for x in runs:
                if r["kind"] == "floor":
                    if x["finished"] == 0:
                        bad.append(f"{r['id']} {sid}: the floor finished no connection")
                    continue
                errs = sum(x["errors"].values())
                if x["ok"] == 0 or errs:
                    bad.append(f"{r['id']} {sid}: {x['ok']} ok, errors {x['errors']}")
                if sid != "idle":
                    continue
                # With --defer-accept the kernel, not the process, holds them.
                held = x["idle_connected"] if r["defer"] else x["held"]
                if held < cfg.idle:
                    bad.append(f"{r['id']} idle: held {held} of {cfg.idle} idle connections")
    return bad


def main():
    cfg = parse_args()
    if cfg.render_only is not None:
        return render_only(cfg.render_only)
    layout = cpu_layout()
    if cfg.list:
        with tempfile.TemporaryDirectory() as tmp:
            for r in rows({"server": "", "floor": "", "loadgen": ""}, cfg, layout, tmp):
                skips = f" (not: {', '.join(r['skip_scenarios'])})" if r.get("skip_scenarios") else ""
                print(f"{r['id']:11} {r['label']}{skips}")
        return 0
    workdir = tempfile.mkdtemp(prefix="flashpolicy-bench-")
    started = time.monotonic()
    bins = build(cfg.smoke, cfg.no_build)
    mach = machine()
    all_rows = rows(bins, cfg, layout, workdir)
    if cfg.only:
        keep = set(cfg.only.split(","))
        unknown = keep - {r["id"] for r in all_rows}
        if unknown:
            sys.exit(f"bench: unknown row(s) {', '.join(sorted(unknown))}; see --list")
        all_rows = [r for r in all_rows if r["id"] in keep]
    for r in all_rows:
        if r.get("skip"):
            log(f"skipping {r['label']}: {r['skip']}")
    if layout[1] is None:
        log("fewer than 2 CPUs or no taskset: server and generator are not pinned")
    scens = scenarios(cfg)
    planned = sum(len([s for s in scens if s[0] not in r["skip_scenarios"]])
                  for r in all_rows if not r.get("skip")) * cfg.rounds
    log(f"{planned} runs of {cfg.warmup:g} + {cfg.duration:g} s: about "
        f"{planned * (cfg.warmup + cfg.duration + 0.3) / 60:.1f} min")
    measuring = time.monotonic()
    results, failed_rows = {}, {}
    for rnd in range(1, cfg.rounds + 1):
        for r in all_rows:
            if r.get("skip") or r["id"] in failed_rows:
                continue
            try:
                server = Server(r, workdir)
            except RuntimeError as e:
                failed_rows[r["id"]] = str(e)
                r["skip"] = f"did not start: {e}"
                log(f"skipping {r['label']}: {r['skip']}")
                continue
            try:
                for scen in scens:
                    if scen[0] in r["skip_scenarios"]:
                        continue
                    tag = f"{r['id']}-{scen[0]}-r{rnd}"
                    res = measure(bins, layout, server, r, scen, cfg, workdir, tag)
                    results.setdefault(r["id"], {}).setdefault(scen[0], []).append(res)
                    cpu = f"{res['cpu_us']:.2f}" if res["cpu_us"] is not None else "–"
                    log(f"round {rnd} {r['id']:10} {scen[0]:5} {res['throughput']:9,.0f}/s "
                        f"cpu {cpu} µs/conn p99 {res['p99']} µs errors {sum(res['errors'].values())}"
                        + (f" held {res['held']} (clients {res['idle_connected']})"
                           if res["held"] is not None else ""))
            except RuntimeError as e:
                failed_rows[r["id"]] = str(e)
                r["skip"] = f"failed: {e}"
                log(f"{r['label']} failed: {e}")
            finally:
                server.stop()
    elapsed = time.monotonic() - measuring

    # Smoke and partial (--only) runs never touch benches/results or README.md.
    official = not cfg.smoke and not cfg.out and not cfg.only
    out = cfg.out or (RESULTS if official else workdir)
    os.makedirs(out, exist_ok=True)
    stem = f"{mach['when'][:10]}-{mach['host']}"
    ran = [r for r in all_rows if not r.get("skip") and results.get(r["id"])]
    svg = os.path.join(out, f"{stem}.svg")
    have_plot = plot(bins, ran, results, "open", svg,
                     f"flashpolicy: total latency, open loop {cfg.rate:,.0f}/s ({mach['cpu']}, "
                     f"{mach['cpus']} CPUs)", workdir)
    rec = {"machine": mach,
           "settings": {k: getattr(cfg, k) for k in
                        ("rounds", "duration", "warmup", "rate", "idle", "smoke")},
           "only": cfg.only,
           "elapsed_s": round(elapsed, 1),
           "layout": {"generator": layout[0], "server": layout[1], "cpus": layout[2]},
           "rows": {r["id"]: {k: r.get(k) for k in
                              ("label", "argv", "cpu", "skip", "kind", "defer", "skip_scenarios")}
                    for r in all_rows},
           "results": {rid: {sid: [{k: v for k, v in x.items() if k != "hlog"} for x in runs]
                             for sid, runs in res.items()} for rid, res in results.items()}}
    md = render_tables(json.loads(json.dumps(rec)), f"{stem}.svg" if have_plot else None)
    md_path, json_path = os.path.join(out, f"{stem}.md"), os.path.join(out, f"{stem}.json")
    with open(md_path, "w") as f:
        f.write(md)
    with open(json_path, "w") as f:
        json.dump(rec, f, indent=1)
    written = [md_path, json_path] + ([svg] if have_plot else [])
    if official:
        shutil.copyfile(json_path, os.path.join(out, "latest.json"))
        with open(os.path.join(out, "latest.md"), "w") as f:
            f.write(render_tables(json.loads(json.dumps(rec)), "latest.svg" if have_plot else None))
        written += [os.path.join(out, "latest.json"), os.path.join(out, "latest.md")]
        if have_plot:
            shutil.copyfile(svg, os.path.join(out, "latest.svg"))
            written.append(os.path.join(out, "latest.svg"))
        update_readme(render_block(json.loads(json.dumps(rec)), "benches/results/latest.json"))
        written.append(README)
    print(md)
    log(f"raw runs (JSON, interval logs, server logs) in {workdir}")
    log(f"finished in {time.monotonic() - started:.0f} s ({elapsed:.0f} s measuring); "
        "results written to:")
    for w in written:
        print(f"  {os.path.relpath(w, ROOT) if w.startswith(ROOT) else w}", file=sys.stderr)
    if cfg.smoke:
        bad = smoke_failures(all_rows, results, cfg)
        for r in all_rows:
            # A kernel without io_uring (or a seccomp filter) is a skip, not a failure.
            why = failed_rows.get(r["id"], "")
            if why and r["kind"] != "peer" and "io_uring is not available" not in why:
                bad.append(f"{r['id']}: {failed_rows[r['id']]}")
        if bad:
            for b in bad:
                log(f"SMOKE FAILURE: {b}")
            return 1
        log("smoke: every server row served with no errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
