"""Drawing one run record: the full tables (benches/results/*.md), README.md's
generated Performance block and the latency plot.

Everything here works from a `Record` (the one the suite just measured, or a
committed one read back with --render-only); nothing here measures. The
generated sentences are in sentences.py.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from . import README, RESULTS, ROOT, log
from .rows import DELAY, SERVER_TIMEOUT, SOURCES, Record, scenarios
from . import sentences
from .families import family_tables

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def med(values):
    v = [x for x in values if x is not None]
    return (statistics.median(v), min(v), max(v)) if v else None


def fmt(m, digits=1, ranged=True, unit=""):
    if m is None:
        return "–"

    def f(x):
        return f"{x:,.{digits}f}"
    if not ranged or m[1] == m[2]:
        return f(m[0]) + unit
    return f"{f(m[0])} ({f(m[1])}–{f(m[2])}){unit}"


class View:
    """Medians and ratios over one record."""

    def __init__(self, rec: Record):
        self.rec = rec
        self.st = rec.settings
        self.mach = rec.machine
        self.layout = rec.layout
        self.res = rec.results
        self.rows = rec.rows
        self.ran = [r for r in self.rows if not r.skip and self.res.get(r.id)]
        self.scens = scenarios(self.st)
        self.kinds = rec.error_kinds()

    def runs(self, rid, sid):
        return self.res.get(rid, {}).get(sid, [])

    def m(self, rid, sid, key, ok_only=False, scale=1.0):
        vals = [getattr(x, key) for x in self.runs(rid, sid) if x.ok or not ok_only]
        return med([x * scale if x is not None else None for x in vals])

    def cpu(self, rid, sid):
        return self.m(rid, sid, "cpu_us")

    def ratio(self, rid, sid):
        a, b = self.cpu(rid, sid), self.cpu("floor", sid)
        return f"{a[0] / b[0]:.2f}×" if a and b and b[0] > 0 else "–"

    def mark(self, rid, sid):
        return "" if all(x.per_ok for x in self.runs(rid, sid)) else " †"

    def rounds(self, sid):
        return max([len(self.runs(r.id, sid)) for r in self.ran] or [0])

    def errors_text(self, runs):
        tot = {k: sum(x.errors.get(k, 0) for x in runs) for k in self.kinds}
        parts = [f"{k} {n:,}" for k, n in tot.items() if n]
        return ", ".join(parts) if parts else "0"

    def delay(self):
        """The delayed scenario, if this record ran it."""
        return next((s for s in self.scens if s.id == DELAY
                     and any(self.runs(r.id, DELAY) for r in self.ran)), None)


def machine_line(v):
    m = v.mach
    return (f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['kernel']}, host `{m['host']}`; "
            f"commit {m['commit']}; CPUs {m['busy']:.0%} busy just before the run"
            f"{' (other work was running: expect noise)' if m['busy'] > 0.1 else ''}.")


def glance(v):
    st = v.st
    lines = [
        "| server | CPU µs per connection (64 conns) | × kernel floor | connections/s (64 conns) "
        f"| p99 µs at {st.rate:,.0f}/s | p99 µs with {st.idle:,} idle | peak RSS with idle "
        "| errors (all runs) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in v.ran:
        if r.family != "policy":
            continue
        rid = r.id
        all_runs = [x for s in v.res[rid].values() for x in s]
        lines.append(
            f"| {r.label} | {fmt(v.cpu(rid, 'c64'), 2)}{v.mark(rid, 'c64')} | {v.ratio(rid, 'c64')} "
            f"| {fmt(v.m(rid, 'c64', 'throughput'), 0)} "
            f"| {fmt(v.m(rid, 'open', 'p99', True), 0, False)} "
            f"| {fmt(v.m(rid, 'idle', 'p99', True), 0, False)} "
            f"| {fmt(v.m(rid, 'idle', 'peak_rss_kb', scale=1 / 1024), 1, False, ' MiB')} "
            f"| {v.errors_text(all_runs)} |")
    return lines


def delay_table(v):
    """Request at once against request one gap later, side by side: CPU per
    connection and × floor in each, for the rows that ran both."""
    scen = v.delay()
    if not scen:
        return []
    d = sentences.delay_of(v)
    lines = [
        f"| server (64 conns) | request at once: CPU µs/conn | × floor | request {d} later: "
        "CPU µs/conn | × floor | change |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in v.ran:
        if not v.runs(r.id, DELAY):
            continue
        a, b = v.cpu(r.id, "c64"), v.cpu(r.id, DELAY)
        change = sentences.change_text(a, b, v.rounds(DELAY)) if a and b else "–"
        lines.append(f"| {r.label} | {fmt(a, 2)}{v.mark(r.id, 'c64')} | {v.ratio(r.id, 'c64')} "
                     f"| {fmt(b, 2)}{v.mark(r.id, DELAY)} | {v.ratio(r.id, DELAY)} | {change} |")
    return lines


def scenario_tables(v):
    lines = []
    for scen in v.scens:
        sid, idle = scen.id, scen.idle
        if scen.family != "policy" or not any(v.runs(r.id, sid) for r in v.ran):
            continue
        lines += [f"## {scen.title}", ""]
        if scen.note:
            lines += [scen.note, ""]
        lines += [
            "| server | connections/s | server CPU µs/conn | × floor | + softirq µs/conn "
            "| generator CPU µs/conn | p50 µs | p99 µs | p99.9 µs | errors | peak RSS MiB |"
            + (" idle held |" if idle else ""),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|" + ("---:|" if idle else ""),
        ]
        for r in v.ran:
            rid, runs = r.id, v.runs(r.id, sid)
            if not runs:
                continue
            row = (f"| {r.label} | {fmt(v.m(rid, sid, 'throughput'), 0)} "
                   f"| {fmt(v.cpu(rid, sid), 2)}{v.mark(rid, sid)} | {v.ratio(rid, sid)} "
                   f"| {fmt(v.m(rid, sid, 'core_us'), 2)} "
                   f"| {fmt(v.m(rid, sid, 'gen_cpu_us'), 1)} "
                   f"| {fmt(v.m(rid, sid, 'p50', True), 0, False)} "
                   f"| {fmt(v.m(rid, sid, 'p99', True), 0)} "
                   f"| {fmt(v.m(rid, sid, 'p99_9', True), 0, False)} "
                   f"| {v.errors_text(runs)} "
                   f"| {fmt(v.m(rid, sid, 'peak_rss_kb', scale=1 / 1024), 1, False)} |")
            if idle:
                held = fmt(v.m(rid, sid, "held"), 0, False)
                conn = v.m(rid, sid, "idle_connected")
                if r.defer and conn:
                    held += f" of {conn[0]:,.0f} ‡"
                row += f" {held} |"
            lines.append(row)
        lines.append("")
    return lines


def first_errors(v):
    notes = []
    for r in v.ran:
        first = {}
        for runs in v.res[r.id].values():
            for x in runs:
                for k, msg in x.first_errors.items():
                    first.setdefault(k, msg)
        if first:
            notes.append(f"- {r.label}: " + "; ".join(f"{k}: {m}" for k, m in first.items()))
    return ["First error of each kind, as the generator reported it:", ""] + notes + [""] if notes else []


def summary(v):
    """The verdict paragraphs both the tables and the README block carry."""
    out = [" ".join(x for x in (sentences.verdict(v), sentences.defer(v)) if x), "",
           sentences.generator(v), ""]
    table = delay_table(v)
    if table:
        out += [f"Request sent at once, and {sentences.delay_of(v)} after the handshake "
                "(closed loop, 64 connections, 1 thread):", "", *table, "",
                sentences.delay(v), ""]
    feat = sentences.features(v)
    if feat:
        out += [feat, ""]
    cap = sentences.capacity(v)
    if cap:
        out += [cap, ""]
    return out


def render_tables(rec: Record, plot_name):
    """The full tables: benches/results/<date>-<host>.md and latest.md."""
    v = View(rec)
    st, lay = v.st, v.layout
    took = f" The suite took {rec.elapsed_s / 60:.1f} min, build excluded." if rec.elapsed_s else ""
    lines = [
        f"# flashpolicy benchmark, {v.mach['when']}",
        "",
        machine_line(v) + "  ",
        f"Command: `scripts/bench.sh{' --smoke' if st.smoke else ''}`: {st.rounds} round(s) in "
        f"alternation (every row once per round), {st.duration:g} s measured per run after "
        f"{st.warmup:g} s of warm-up; median of the rounds, (min–max) where they differ.{took}  ",
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
        if r.skip:
            lines.append(f"Skipped {r.label}: {r.skip}.  ")
    for r in v.ran:
        if r.skip_scenarios:
            lines.append(f"Not run for {r.label}: {', '.join(r.skip_scenarios)} (to keep the "
                         "suite short; see the method).  ")
    for sid, why in rec.skipped_scenarios.items():
        lines.append(f"Not run: scenario {sid} (closed loop, 64 connections, the request sent "
                     f"after the handshake): {why}.  ")
    lines += [
        "What every row and column means (†, ‡ included) and how it is measured: "
        "[benches/README.md](../README.md).",
        "",
        "## At a glance",
        "",
        *glance(v),
        "",
        *summary(v),
        *family_tables(v, fmt),
        *scenario_tables(v),
        *first_errors(v),
    ]
    if plot_name:
        lines += [f"![Total latency by percentile, open loop at {st.rate:,.0f}/s]({plot_name})", ""]
    return "\n".join(lines)


def render_block(rec: Record, source):
    """README.md's generated Performance block: the summary, the plot, a link
    to the full tables."""
    v = View(rec)
    st = v.st
    lines = [
        f"<!-- generated by scripts/bench.sh from {source}; edit scripts/bench/render.py, "
        "not this block -->",
        f"Latest run: {v.mach['when']}, {st.rounds} round{'s' if st.rounds != 1 else ''}, "
        "median (min–max). "
        + machine_line(v),
        "",
        *glance(v),
        "",
        "† divided by every connection the clients finished (the floor's and the peers' clients "
        "mostly see a reset).",
        "",
        *summary(v),
        # Inside README.md's Performance section: one level down.
        *family_tables(v, fmt, "###"),
        f"![Total latency by percentile, open loop at {st.rate:,.0f}/s](benches/results/latest.svg)",
        "",
        "Every scenario in full (1,024 connections, softirq, generator CPU, p50/p99.9, idle "
        "connections held, first errors): [benches/results/latest.md](benches/results/latest.md).",
    ]
    return "\n".join(lines)


def plot(bins, rec: Record, hlogs, out_svg, title, workdir, sid="open"):
    """Merges each row's interval logs (hlogs: row id -> scenario id -> [path],
    runs with successes only) and plots them with the generator's own plot
    command; False if nothing was drawn."""
    files, labels = [], []
    for r in rec.rows:
        logs = hlogs.get(r.id, {}).get(sid, [])
        if r.skip or not logs:
            continue
        hgrm = os.path.join(workdir, f"{r.id}-{sid}.hgrm")
        m = subprocess.run([bins["loadgen"], "merge", *logs, "--hgrm", hgrm],
                           capture_output=True, text=True)
        if m.returncode == 0:
            files.append(hgrm)
            labels.append(r.label)
        else:
            log(f"merge for {r.id} failed: {m.stderr.strip()}")
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


def load(path) -> Record:
    with open(path) as f:
        return Record.from_json(json.load(f))


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
    rec = load(path)
    have_plot = os.path.exists(os.path.join(RESULTS, "latest.svg"))
    out = os.path.join(RESULTS, "latest.md")
    with open(out, "w") as f:
        f.write(render_tables(rec, "latest.svg" if have_plot else None))
    update_readme(render_block(rec, os.path.relpath(path, ROOT)))
    log(f"rendered {os.path.relpath(path, ROOT)} into {os.path.relpath(out, ROOT)} and README.md")
    return 0
