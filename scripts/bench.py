#!/usr/bin/env python3
"""The flashpolicy benchmark: what one served connection costs each engine.

Run it through scripts/bench.sh (see `scripts/bench.sh --help`). It builds
release binaries, then runs flashpolicy-loadgen against each server row:

  flashpolicyd --backend epoll | uring | uring --send-zc, at 1 thread and at
  all cores; the kernel floor (crates/server/examples/kernel_floor.rs, accept
  and close, nothing else); nginx (stream `return`) and node's `policyfile`
  when installed (scripts/peers-setup.sh).

Scenarios per row: closed loop at 64 and 1,024 connections; open loop at a
fixed rate; N idle connections held while good clients are served at that
rate. Rows are measured in alternation (A B C A B C ...) and each figure is
the median of the rounds, with min-max.

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
PERF_DOC = os.path.join(ROOT, "benches", "README-performance.md")
SOURCES = "127.0.0.2-127.0.0.254"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ERROR_KINDS = ["connect", "reset", "timeout", "bad_response", "ports_exhausted"]
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
    p.add_argument("--duration", type=float, help="seconds measured per run (default 2.5)")
    p.add_argument("--warmup", type=float, help="seconds of unmeasured load before each run (default 0.5)")
    p.add_argument("--rate", type=float, help="open loop connections/s, below saturation (default 5000)")
    p.add_argument("--idle", type=int, help="idle connections held in the idle scenario (default 10000)")
    p.add_argument("--only", help="comma list of row ids to run (e.g. epoll-1,floor); see --list")
    p.add_argument("--list", action="store_true", help="print the row ids and exit")
    p.add_argument("--no-peers", action="store_true", help="skip nginx and node")
    p.add_argument("--no-build", action="store_true", help="use binaries already built")
    p.add_argument("--out", help="results directory (default benches/results; --smoke: a temp dir)")
    a = p.parse_args()
    defaults = dict(rounds=3, duration=2.5, warmup=0.5, rate=5000.0, idle=10000)
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
    """Every row: id, label, argv (or skip reason), pinned CPU, kind."""
    _, server_cpu, cpus = layout
    n = len(cpus)
    out = []
    base = [bins["server"], "--listen", "127.0.0.1:0", "--policy", POLICY, "--timeout", SERVER_TIMEOUT]
    engines = [("epoll", "epoll", []), ("uring", "uring", []), ("uring-zc", "uring --send-zc", ["--send-zc"])]
    for threads, pinned in ((1, True), (n, False)):
        if threads == 1 or (n > 1 and not cfg.smoke):
            for eid, label, extra in engines:
                be = "uring" if eid.startswith("uring") else "epoll"
                out.append(dict(id=f"{eid}-{threads}", label=f"flashpolicyd {label}, {threads} thr",
                                argv=base + ["--backend", be, "--threads", str(threads)] + extra,
                                cpu=server_cpu if pinned else None, kind="engine"))
    out.append(dict(id="floor", label="kernel floor, 1 thr",
                    argv=[bins["floor"], "--listen", "127.0.0.1:0", "--threads", "1"],
                    cpu=server_cpu, kind="floor"))
    if not cfg.no_peers:
        for pid, label, (row, why) in (("nginx", "nginx stream return", nginx_row(workdir)),
                                        ("node", "node policyfile", node_row())):
            if row:
                out.append(dict(id=pid, label=label, argv=row["argv"], port=row["port"],
                                cpu=server_cpu, kind="peer"))
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


def hold_idle(bins, gen_cpus, server, cfg):
    """Opens cfg.idle idle connections; returns (holder process, how many the server holds)."""
    base = server.open_fds()
    rate = max(1000.0, min(20000.0, cfg.idle * 4.0))
    holder = subprocess.Popen(
        taskset(gen_cpus) + [bins["loadgen"], "--scenario", "idle", "--rate", f"{rate:g}",
                             "--count", str(cfg.idle), "--timeout", "120s", "--source", SOURCES,
                             "--quiet", server.addr],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5 + cfg.idle / rate * 2
    held = 0
    while time.monotonic() < deadline:
        held = server.open_fds() - base
        if held >= cfg.idle or holder.poll() is not None:
            break
        time.sleep(0.1)
    time.sleep(0.2)
    return holder, max(0, server.open_fds() - base)


def measure(bins, layout, server, row, scen, cfg, rdir, tag):
    sid, _, args = scen
    gen_cpus = layout[0]
    holder, held = None, None
    try:
        if sid == "idle":
            holder, held = hold_idle(bins, gen_cpus, server, cfg)
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
        "peak_rss_kb": peak,
        "held": held,
        "first_errors": j.get("first_errors", {}),
        "hlog": out_log,
    }


# ---------------------------------------------------------------- report


def med(values):
    v = [x for x in values if x is not None]
    return (statistics.median(v), min(v), max(v)) if v else None


def fmt(m, digits=1, ranged=True):
    if m is None:
        return "–"
    f = lambda x: f"{x:,.{digits}f}"
    if not ranged or m[1] == m[2]:
        return f(m[0])
    return f"{f(m[0])} ({f(m[1])}–{f(m[2])})"


def errors_text(runs):
    tot = {k: sum(r["errors"][k] for r in runs) for k in ERROR_KINDS}
    parts = [f"{k} {v:,}" for k, v in tot.items() if v]
    return ", ".join(parts) if parts else "0"


def report(cfg, mach, layout, all_rows, results, scens, plot_name):
    gen_cpus, server_cpu, cpus = layout
    lines = [
        f"# flashpolicy benchmark, {mach['when']}",
        "",
        f"Machine: {mach['cpu']}, {mach['cpus']} CPUs, {mach['kernel']}, host `{mach['host']}`; "
        f"commit {mach['commit']}; CPUs {mach['busy']:.0%} busy just before the run"
        f"{' (other work was running: expect noise)' if mach['busy'] > 0.1 else ''}.  ",
        f"Command: `scripts/bench.sh{' --smoke' if cfg.smoke else ''}`: {cfg.rounds} round(s) in "
        f"alternation (every row once per round), {cfg.duration:g} s measured per run after "
        f"{cfg.warmup:g} s of warm-up; median of the rounds, (min–max) where they differ.  ",
    ]
    if server_cpu is not None:
        lines.append(
            f"Pinning: the generator on CPU {','.join(map(str, gen_cpus))}; 1-thread rows, the floor "
            f"and the peers on CPU {server_cpu}; {len(cpus)}-thread rows unpinned (they share the "
            f"generator's CPU).  ")
    else:
        lines.append("Pinning: none (fewer than 2 CPUs, or no taskset).  ")
    lines.append(f"Client source addresses {SOURCES}; server `--timeout {SERVER_TIMEOUT}`; "
                 f"policy `scripts/peers/policy.xml`.")
    skipped = [r for r in all_rows if r.get("skip")]
    for r in skipped:
        lines.append(f"Skipped {r['label']}: {r['skip']}.  ")
    lines.append("")
    ran = [r for r in all_rows if not r.get("skip") and results.get(r["id"])]
    floor = results.get("floor", {})

    def cpu_m(rid, sid):
        return med([x["cpu_us"] for x in results.get(rid, {}).get(sid, [])])

    def ratio(rid, sid):
        a, b = cpu_m(rid, sid), cpu_m("floor", sid)
        return f"{a[0] / b[0]:.2f}×" if a and b and b[0] > 0 else "–"

    def mark(rid, sid):
        runs = results[rid].get(sid, [])
        return "" if all(x["per_ok"] for x in runs) else " †"

    open_id = "open"
    lines += [
        "## At a glance",
        "",
        "| server | CPU µs per connection (64 conns) | × kernel floor | connections/s (64 conns) "
        f"| p99 µs at {cfg.rate:,.0f}/s | p99 µs with {cfg.idle:,} idle | peak RSS with idle | errors (all runs) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in ran:
        rid, res = r["id"], results[r["id"]]
        all_runs = [x for s in res.values() for x in s]
        idle = res.get("idle", [])
        lines.append(
            f"| {r['label']} | {fmt(cpu_m(rid, 'c64'), 2)}{mark(rid, 'c64')} | {ratio(rid, 'c64')} "
            f"| {fmt(med([x['throughput'] for x in res.get('c64', [])]), 0)} "
            f"| {fmt(med([x['p99'] for x in res.get(open_id, []) if x['ok']]), 0, False)} "
            f"| {fmt(med([x['p99'] for x in idle if x['ok']]), 0, False)} "
            f"| {fmt(med([x['peak_rss_kb'] / 1024 for x in idle]), 1, False)} MiB "
            f"| {errors_text(all_runs)} |")
    lines += ["", verdict(results, ran, "c64"), ""]
    for sid, title, _ in scens:
        lines += [
            f"## {title}",
            "",
            "| server | connections/s | server CPU µs/conn | × floor | + softirq µs/conn "
            "| p50 µs | p99 µs | p99.9 µs | errors | peak RSS MiB |"
            + (" idle held |" if sid == "idle" else ""),
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|" + ("---:|" if sid == "idle" else ""),
        ]
        for r in ran:
            runs = results[r["id"]].get(sid, [])
            if not runs:
                continue
            row = (f"| {r['label']} | {fmt(med([x['throughput'] for x in runs]), 0)} "
                   f"| {fmt(cpu_m(r['id'], sid), 2)}{mark(r['id'], sid)} | {ratio(r['id'], sid)} "
                   f"| {fmt(med([x['core_us'] for x in runs]), 2)} "
                   f"| {fmt(med([x['p50'] for x in runs if x['ok']]), 0, False)} "
                   f"| {fmt(med([x['p99'] for x in runs if x['ok']]), 0)} "
                   f"| {fmt(med([x['p99_9'] for x in runs if x['ok']]), 0, False)} "
                   f"| {errors_text(runs)} "
                   f"| {fmt(med([x['peak_rss_kb'] / 1024 for x in runs]), 1, False)} |")
            if sid == "idle":
                row += f" {fmt(med([x['held'] for x in runs]), 0, False)} |"
            lines.append(row)
        lines.append("")
    lines += [
        "Columns: *connections/s*: good clients served per second (the generator's core is the "
        "limit in closed loop, so there this mostly measures the generator); *server CPU µs/conn*: "
        "the server process's user+system time (/proc/PID/stat) over the measured window divided "
        "by the connections it served correctly († = divided by all connections the clients "
        "finished, whatever the outcome, for the floor and the peers, whose clients mostly fail; "
        "connections/s counts those too); *× floor*: that divided by the kernel floor's; *+ softirq µs/conn*: the same plus "
        "the interrupt and softirq time of the server's pinned CPU (/proc/stat), pinned rows only: "
        "on loopback much of TCP's work runs in softirq and is charged to no process; "
        "*p50/p99/p99.9*: total latency of good clients, connect to close "
        "(open loop: from each connection's intended start); *errors*: the generator's error kinds "
        "summed over all rounds; *peak RSS*: the server's VmHWM during the run; *idle held*: idle "
        "connections the server held open during the run.",
        "",
    ]
    notes = []
    for r in ran:
        first = {}
        for runs in results[r["id"]].values():
            for x in runs:
                for k, msg in x["first_errors"].items():
                    first.setdefault(k, msg)
        if first:
            notes.append(f"- {r['label']}: " + "; ".join(f"{k}: {m}" for k, m in first.items()))
    if notes:
        lines += ["First error of each kind, as the generator reported it:", ""] + notes + [""]
    if plot_name:
        lines += [f"![Total latency by percentile, open loop at {cfg.rate:,.0f}/s]({plot_name})", ""]
    return "\n".join(lines)


def verdict(results, ran, sid):
    """One generated sentence: which engine costs least, and whether the
    difference is larger than the noise between rounds."""
    engines, rounds = [], 0
    for r in ran:
        rounds = max(rounds, len(results[r["id"]].get(sid, [])))
        m = med([x["cpu_us"] for x in results[r["id"]].get(sid, [])])
        if r["kind"] == "engine" and m:
            engines.append((m, r["label"]))
    floor = med([x["cpu_us"] for x in results.get("floor", {}).get(sid, [])])
    if not engines:
        return ""
    engines.sort()
    (best, name), worst = engines[0], engines[-1][0]
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


def update_perf_doc(table_md):
    """Replaces the generated part of benches/README-performance.md."""
    with open(PERF_DOC) as f:
        doc = f.read()
    a, b = doc.find(BEGIN), doc.find(END)
    if a < 0 or b < a:
        log(f"{PERF_DOC} has no {BEGIN} ... {END} markers; not updated")
        return
    body = table_md.split("\n", 1)[1]  # without the file's own title
    body = body.replace("](latest.svg)", "](results/latest.svg)")
    # The doc's section sits at level 3: its tables' headings go one below.
    body = re.sub(r"(?m)^## ", "#### ", body)
    with open(PERF_DOC, "w") as f:
        f.write(doc[:a + len(BEGIN)] + "\n" + body.strip() + "\n" + doc[b:])


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
                if sid == "idle" and x["held"] < cfg.idle:
                    bad.append(f"{r['id']} idle: held {x['held']} of {cfg.idle} idle connections")
    return bad


def main():
    cfg = parse_args()
    layout = cpu_layout()
    workdir = tempfile.mkdtemp(prefix="flashpolicy-bench-")
    if cfg.list:
        for r in rows({"server": "", "floor": "", "loadgen": ""}, cfg, layout, workdir):
            print(f"{r['id']:10} {r['label']}")
        return 0
    started = time.monotonic()
    bins = build(cfg.smoke, cfg.no_build)
    mach = machine()
    all_rows = rows(bins, cfg, layout, workdir)
    if cfg.only:
        keep = set(cfg.only.split(","))
        all_rows = [r for r in all_rows if r["id"] in keep]
    for r in all_rows:
        if r.get("skip"):
            log(f"skipping {r['label']}: {r['skip']}")
    if layout[1] is None:
        log("fewer than 2 CPUs or no taskset: server and generator are not pinned")
    scens = scenarios(cfg)
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
                    tag = f"{r['id']}-{scen[0]}-r{rnd}"
                    res = measure(bins, layout, server, r, scen, cfg, workdir, tag)
                    results.setdefault(r["id"], {}).setdefault(scen[0], []).append(res)
                    cpu = f"{res['cpu_us']:.2f}" if res["cpu_us"] is not None else "–"
                    log(f"round {rnd} {r['id']:9} {scen[0]:5} {res['throughput']:9,.0f}/s "
                        f"cpu {cpu} µs/conn p99 {res['p99']} µs errors {sum(res['errors'].values())}"
                        + (f" held {res['held']}" if res["held"] is not None else ""))
            except RuntimeError as e:
                failed_rows[r["id"]] = str(e)
                r["skip"] = f"failed: {e}"
                log(f"{r['label']} failed: {e}")
            finally:
                server.stop()

    out = cfg.out or (workdir if cfg.smoke else RESULTS)
    os.makedirs(out, exist_ok=True)
    stem = f"{mach['when'][:10]}-{mach['host']}"
    ran = [r for r in all_rows if not r.get("skip") and results.get(r["id"])]
    svg = os.path.join(out, f"{stem}.svg")
    have_plot = plot(bins, ran, results, "open", svg,
                     f"flashpolicy: total latency, open loop {cfg.rate:,.0f}/s ({mach['cpu']}, "
                     f"{mach['cpus']} CPUs)", workdir)
    md = report(cfg, mach, layout, all_rows, results, scens, f"{stem}.svg" if have_plot else None)
    md_path = os.path.join(out, f"{stem}.md")
    with open(md_path, "w") as f:
        f.write(md)
    raw = {"machine": mach, "settings": {k: getattr(cfg, k) for k in
                                          ("rounds", "duration", "warmup", "rate", "idle")},
           "rows": {r["id"]: {"label": r["label"], "argv": r.get("argv"), "cpu": r.get("cpu"),
                              "skip": r.get("skip")} for r in all_rows},
           "results": {rid: {sid: [{k: v for k, v in x.items() if k != "hlog"} for x in runs]
                             for sid, runs in res.items()} for rid, res in results.items()}}
    with open(os.path.join(out, f"{stem}.json"), "w") as f:
        json.dump(raw, f, indent=1)
    written = [md_path, os.path.join(out, f"{stem}.json")] + ([svg] if have_plot else [])
    if not cfg.smoke and not cfg.out and not cfg.only:
        with open(os.path.join(out, "latest.md"), "w") as f:
            f.write(md.replace(f"]({stem}.svg)", "](latest.svg)"))
        written.append(os.path.join(out, "latest.md"))
        if have_plot:
            shutil.copyfile(svg, os.path.join(out, "latest.svg"))
            written.append(os.path.join(out, "latest.svg"))
        update_perf_doc(md.replace(f"]({stem}.svg)", "](latest.svg)"))
        written.append(PERF_DOC)
    print(md)
    log(f"raw runs (JSON, interval logs, server logs) in {workdir}")
    log(f"finished in {time.monotonic() - started:.0f} s; results written to:")
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
