"""Running things and reading what they cost: the build, the servers, the
load generator, CPU pinning, and the /proc accounting behind every figure.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time

from . import POLICY, ROOT, log
from .rows import SOURCES, Row, Run, Scenario, Settings

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the machine


def cpu_layout():
    """(generator CPUs, the server's CPU or None, all CPUs)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not shutil.which("taskset"):
        return None, None, cpus
    # The server's 1-thread rows get the last CPU, the generator the rest
    # (on 2 cores: generator on CPU 0, server on CPU 1).
    return cpus[:-1], cpus[-1], cpus


def taskset(cpus):
    if cpus is None:
        return []
    return ["taskset", "-c", ",".join(str(c) for c in cpus)]


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


# ---------------------------------------------------------------- build


def build(smoke, no_build):
    """Builds flashpolicyd, the kernel floor and the generator; returns their
    paths. The target directory is cargo's own answer (`cargo metadata`), so
    CARGO_TARGET_DIR and .cargo/config are honoured."""
    profile = "debug" if smoke else "release"
    if not no_build:
        cmd = ["cargo", "build", "--locked", "-p", "flashpolicy-server", "-p", "flashpolicy-loadgen",
               "--bin", "flashpolicyd", "--bin", "flashpolicy-loadgen", "--bin", "flashpolicy-echo",
               "--example", "kernel_floor"]
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
        "echo": os.path.join(target, "flashpolicy-echo"),
    }
    for name, path in bins.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {path} missing; build it or drop --no-build")
    return bins


def server_has(bins, option):
    """Whether this flashpolicyd takes `option` (from its --help)."""
    r = subprocess.run([bins["server"], "--help"], capture_output=True, text=True)
    return re.search(rf"(^|[\s,]){re.escape(option)}\b", r.stdout + r.stderr) is not None


def loadgen_has(bins, option):
    """Whether this flashpolicy-loadgen takes `option` (from its --help)."""
    r = subprocess.run([bins["loadgen"], "--help"], capture_output=True, text=True)
    return re.search(rf"(^|[\s,]){re.escape(option)}\b", r.stdout + r.stderr) is not None


# ---------------------------------------------------------------- servers


class Server:
    """One running server process (pinned to row.cpu, or to `cpus`)."""

    def __init__(self, row: Row, workdir, cpus=None):
        self.row = row
        self.errlog = os.path.join(workdir, f"{row.id}.stderr")
        cpu = [row.cpu] if row.cpu is not None else cpus
        with open(self.errlog, "wb") as err:
            self.proc = subprocess.Popen(taskset(cpu) + row.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        self.addr = self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}: {self.stderr_tail()}")
            if self.row.port is not None:
                try:
                    socket.create_connection(("127.0.0.1", self.row.port), timeout=0.2).close()
                    return f"127.0.0.1:{self.row.port}"
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
        # utime + stime, all threads, plus cutime + cstime: children it has
        # reaped (websockify forks one per connection; 0 for the others).
        return sum(int(x) for x in fields[11:15])

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


def relay_backends(bins, layout, workdir):
    """The relay families' echo server and the policy server HAProxy and sslh
    send policy requests to, started once per suite on the generator's CPUs
    (their CPU is not the measured server's): {"echo": Server, "policy": Server}."""
    out = {}
    try:
        out["echo"] = Server(Row(id="echo", label="flashpolicy-echo", kind="backend",
                                 argv=[bins["echo"], "--listen", "127.0.0.1:0"]),
                             workdir, cpus=layout[0])
        out["policy"] = Server(Row(id="policy", label="policy server", kind="backend",
                                   argv=[bins["server"], "--listen", "127.0.0.1:0", "--policy",
                                         POLICY, "--threads", "1", "--backend", "epoll"]),
                               workdir, cpus=layout[0])
    except RuntimeError:
        for b in out.values():
            b.stop()
        raise
    return out


# ---------------------------------------------------------------- the generator


def loadgen(bins, gen_cpus, target, args, duration, out_json=None, out_log=None):
    cmd = taskset(gen_cpus) + [bins["loadgen"], *args, "--duration", f"{duration}s",
                               "--source", SOURCES, "--quiet"]
    if out_json:
        cmd += ["--json", out_json]
    if out_log:
        cmd += ["--log", out_log]
    cmd.append(target)
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


def hold_idle(bins, gen_cpus, server, st: Settings):
    """Opens st.idle idle connections. Returns (holder process, how many the
    server process holds, how many the holder has open)."""
    base = server.open_fds()
    rate = max(1000.0, min(20000.0, st.idle * 4.0))
    holder = subprocess.Popen(
        taskset(gen_cpus) + [bins["loadgen"], "--scenario", "idle", "--rate", f"{rate:g}",
                             "--count", str(st.idle), "--timeout", "120s", "--source", SOURCES,
                             "--quiet", server.addr],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5 + st.idle / rate * 2
    time.sleep(min(0.5, st.idle / rate))
    # Counted on the client's side: with --defer-accept the kernel holds idle
    # connections that the server process never sees.
    while time.monotonic() < deadline:
        if socket_fds(holder.pid) >= st.idle or holder.poll() is not None:
            break
        time.sleep(0.1)
    time.sleep(0.2)
    return holder, max(0, server.open_fds() - base), socket_fds(holder.pid)


def measure(bins, layout, server, row: Row, scen: Scenario, st: Settings, rdir, tag) -> Run:
    """One run: warm-up, then the measured window, with the server's CPU
    read from /proc before and after."""
    gen_cpus = layout[0]
    holder, held, connected = None, None, None
    try:
        if scen.idle:
            holder, held, connected = hold_idle(bins, gen_cpus, server, st)
        args = scen.args + row.gen_args
        if st.warmup > 0:
            loadgen(bins, gen_cpus, server.addr, args, st.warmup)
        out_json = os.path.join(rdir, f"{tag}.json")
        out_log = os.path.join(rdir, f"{tag}.hlog")
        server.reset_peak_rss()
        t0, c0 = server.cpu_ticks(), core_irq(row.cpu)
        loadgen(bins, gen_cpus, server.addr, args, st.duration, out_json, out_log)
        t1, c1 = server.cpu_ticks(), core_irq(row.cpu)
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
    # The relay families: per echo that came back whole, for every row.
    per_ok = row.kind == "engine" or row.family != "policy"
    den = j["ok"] if per_ok else j.get("connections_finished", 0)

    def us(ticks):
        return ticks / CLK_TCK * 1e6 / den if den else None
    lat = j["latency_us"]["total"]
    return Run(
        ok=j["ok"], finished=j.get("connections_finished", 0), per_ok=per_ok,
        throughput=j["throughput_per_sec"] if per_ok
        else den / j["duration_s"] if j.get("duration_s") else 0.0,
        # Every kind the generator reports, under its own names.
        errors={k: int(v) for k, v in j["errors"].items()},
        p50=lat["p50"], p99=lat["p99"], p99_9=lat["p99_9"], max=lat["max"],
        cpu_us=us(t1 - t0),
        core_us=us(t1 - t0 + c1 - c0) if c0 is not None else None,
        gen_cpu_us=j.get("generator_cpu_us_per_conn"),
        gen_user_us=j.get("generator_cpu_user_us_per_conn"),
        # Share of the generator's CPUs it kept busy: near 1, it is the bottleneck.
        gen_busy=(j["generator_cpu_s"] / j["duration_s"] / len(gen_cpus or layout[2]))
        if j.get("generator_cpu_s") and j.get("duration_s") else None,
        duration_s=j.get("duration_s"),
        peak_rss_kb=peak, held=held, idle_connected=connected,
        first_errors=j.get("first_errors", {}),
        hlog=out_log,
    )

