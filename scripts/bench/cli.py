"""The options, the rounds, and where the results go."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from . import README, RESULTS, ROOT, holdopen, log, measure, peers
from .relays import hold_count
from .render import plot, render_block, render_only, render_tables, update_readme
from .rows import DELAY, Record, Settings, scenarios, server_rows

SEND_DELAY = "50us"


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
    p.add_argument("--send-delay", metavar="DURATION",
                   help=f"the {DELAY} scenario's loadgen --send-delay: each client waits this long "
                        f"after the handshake before its request (default {SEND_DELAY}; 0: skip the "
                        "scenario; skipped with a note if the generator lacks the option)")
    p.add_argument("--only", help="comma list of row ids to run (e.g. epoll-1,floor), or of "
                                  "families (policy, gateway, bridge); see --list")
    p.add_argument("--list", action="store_true", help="print the row ids and exit")
    p.add_argument("--no-peers", action="store_true",
                   help="skip nginx and node, HAProxy, sslh and websockify")
    p.add_argument("--no-build", action="store_true", help="use binaries already built")
    p.add_argument("--out", help="results directory (default benches/results; --smoke and --only: "
                                 "a temp dir)")
    p.add_argument("--render-only", nargs="?", const="", metavar="JSON",
                   help="measure nothing: redraw benches/results/latest.md and README.md's "
                        "Performance block from JSON (default benches/results/latest.json, else "
                        "the newest full run there)")
    a = p.parse_args()
    defaults = dict(rounds=3, duration=2.0, warmup=0.5, rate=5000.0, idle=10000)
    # Smoke runs no policy peer, but the relay peers when installed.
    a.no_policy_peers = a.no_peers or a.smoke
    if a.smoke:
        defaults = dict(rounds=1, duration=0.3, warmup=0.0, rate=1000.0, idle=200)
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.send_delay is None:
        a.send_delay = SEND_DELAY
    if a.send_delay.strip() in ("0", "0s", ""):
        a.send_delay = None
    return a


def settings(cfg) -> Settings:
    return Settings(rounds=cfg.rounds, duration=cfg.duration, warmup=cfg.warmup, rate=cfg.rate,
                    idle=cfg.idle, smoke=cfg.smoke, send_delay=cfg.send_delay)


def smoke_failures(rows, results, st):
    bad = []
    for r in rows:
        if r.skip or r.kind == "peer":
            continue
        res = results.get(r.id)
        if not res:
            bad.append(f"{r.id}: no result")
            continue
        for sid, runs in res.items():
            for x in runs:
                if r.kind == "floor":
                    if x.finished == 0:
                        bad.append(f"{r.id} {sid}: the floor finished no connection")
                    continue
                errs = sum(x.errors.values())
                if x.ok == 0 or errs:
                    bad.append(f"{r.id} {sid}: {x.ok} ok, errors {x.errors}")
                if sid != "idle":
                    continue
                # With --defer-accept the kernel, not the process, holds them.
                held = x.idle_connected if r.defer else x.held
                if held < st.idle:
                    bad.append(f"{r.id} idle: held {held} of {st.idle} idle connections")
    return bad


def list_rows(cfg, layout):
    st = settings(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        found = [] if cfg.no_policy_peers else peers.find(tmp)
        relay = [] if cfg.no_peers else peers.relay_peers(tmp, "127.0.0.1:1", "127.0.0.1:2")
        for r in server_rows({"server": "", "floor": "", "loadgen": ""}, st, layout, found,
                             relay_peers=relay):
            runs = [s.id for s in scenarios(st) if r.runs(s)]
            print(f"{r.id:11} {r.label} ({', '.join(runs)})"
                  + (f" [skipped: {r.skip}]" if r.skip else ""))
    return 0


def main():
    cfg = parse_args()
    if cfg.render_only is not None:
        return render_only(cfg.render_only)
    layout = measure.cpu_layout()
    if cfg.list:
        return list_rows(cfg, layout)
    workdir = tempfile.mkdtemp(prefix="flashpolicy-bench-")
    started = time.monotonic()
    bins = measure.build(cfg.smoke, cfg.no_build)
    skipped_scens = {}
    if cfg.send_delay and not measure.loadgen_has(bins, "--send-delay"):
        skipped_scens[DELAY] = "this flashpolicy-loadgen has no --send-delay"
        log(f"note: skipping the {DELAY} scenario (request sent {cfg.send_delay} after the "
            "handshake): flashpolicy-loadgen --help lists no --send-delay")
        cfg.send_delay = None
    st = settings(cfg)
    mach = measure.machine()
    unsupported = []
    if not (measure.server_has(bins, "--proxy-protocol")
            and measure.loadgen_has(bins, "--proxy-protocol")):
        unsupported += ["epoll-pp", "uring-pp"]
    if not measure.server_has(bins, "--metrics"):
        unsupported += ["epoll-m", "uring-m"]
    for rid, flag in (("gw-fpd", "--gateway"), ("ws-fpd", "--websocket")):
        if not measure.server_has(bins, flag):
            unsupported.append(rid)
    if unsupported:
        log(f"note: these binaries cannot run the rows {', '.join(unsupported)}")
    backends = measure.relay_backends(bins, layout, workdir)
    try:
        return run_suite(cfg, bins, st, layout, mach, unsupported, skipped_scens, workdir,
                         started, backends)
    finally:
        for b in backends.values():
            b.stop()


def pick(rows, only):
    """The rows --only names, by id or by family."""
    keep = set(only.split(","))
    unknown = keep - {r.id for r in rows} - {r.family for r in rows}
    if unknown:
        sys.exit(f"bench: unknown row(s) {', '.join(sorted(unknown))}; see --list")
    return [r for r in rows if r.id in keep or r.family in keep]


def run_suite(cfg, bins, st, layout, mach, unsupported, skipped_scens, workdir, started,
              backends):
    echo, policy = backends["echo"].addr, backends["policy"].addr
    rows = server_rows(bins, st, layout, [] if cfg.no_policy_peers else peers.find(workdir),
                       unsupported, echo=echo,
                       relay_peers=[] if cfg.no_peers else peers.relay_peers(workdir, echo, policy))
    if not measure.loadgen_has(bins, "--websocket"):
        for r in rows:
            if r.family == "bridge":
                r.skip = "this flashpolicy-loadgen has no --websocket"
    if cfg.only:
        rows = pick(rows, cfg.only)
    for r in rows:
        if r.skip:
            log(f"skipping {r.label}: {r.skip}")
    if layout[1] is None:
        log("fewer than 2 CPUs or no taskset: server and generator are not pinned")
    scens = scenarios(st)
    planned = sum(len([s for s in scens if r.runs(s)]) for r in rows if not r.skip) * st.rounds
    log(f"{planned} runs of {st.warmup:g} + {st.duration:g} s: about "
        f"{planned * (st.warmup + st.duration + 0.3) / 60:.1f} min")
    measuring = time.monotonic()
    results, hlogs, failed = {}, {}, {}
    for rnd in range(1, st.rounds + 1):
        for r in rows:
            if r.skip or r.id in failed:
                continue
            try:
                server = measure.Server(r, workdir)
            except RuntimeError as e:
                failed[r.id] = str(e)
                r.skip = f"did not start: {e}"
                log(f"skipping {r.label}: {r.skip}")
                continue
            try:
                for scen in scens:
                    if not r.runs(scen):
                        continue
                    tag = f"{r.id}-{scen.id}-r{rnd}"
                    if scen.hold:
                        res = holdopen.hold(server, hold_count(r.id, st), r.family == "bridge")
                    else:
                        res = measure.measure(bins, layout, server, r, scen, st, workdir, tag)
                    results.setdefault(r.id, {}).setdefault(scen.id, []).append(res)
                    if res.ok > 0:
                        hlogs.setdefault(r.id, {}).setdefault(scen.id, []).append(res.hlog)
                    cpu = f"{res.cpu_us:.2f}" if res.cpu_us is not None else "–"
                    if scen.hold:
                        log(f"round {rnd} {r.id:10} {scen.id:5} held {res.held} of "
                            f"{res.finished} relays, memory +{res.mem_delta_kb:,} KiB, "
                            f"errors {sum(res.errors.values())}")
                        continue
                    log(f"round {rnd} {r.id:10} {scen.id:5} {res.throughput:9,.0f}/s "
                        f"cpu {cpu} µs/conn p99 {res.p99} µs errors {sum(res.errors.values())}"
                        + (f" held {res.held} (clients {res.idle_connected})"
                           if res.held is not None else ""))
            except RuntimeError as e:
                failed[r.id] = str(e)
                r.skip = f"failed: {e}"
                log(f"{r.label} failed: {e}")
            finally:
                server.stop()
    elapsed = time.monotonic() - measuring

    # Smoke and partial (--only) runs never touch benches/results or README.md.
    official = not cfg.smoke and not cfg.out and not cfg.only
    out = cfg.out or (RESULTS if official else workdir)
    os.makedirs(out, exist_ok=True)
    stem = f"{mach['when'][:10]}-{mach['host']}"
    rec = Record(machine=mach, settings=st, layout={"generator": layout[0], "server": layout[1],
                                                     "cpus": layout[2]},
                 rows=rows, results=results, only=cfg.only, elapsed_s=round(elapsed, 1),
                 skipped_scenarios=skipped_scens)
    # Rendered from the record as written, exactly as --render-only would.
    rec = Record.from_json(rec.to_json())
    svg = os.path.join(out, f"{stem}.svg")
    have_plot = plot(bins, rec, hlogs, svg,
                     f"flashpolicy: total latency, open loop {st.rate:,.0f}/s ({mach['cpu']}, "
                     f"{mach['cpus']} CPUs)", workdir)
    md = render_tables(rec, f"{stem}.svg" if have_plot else None)
    md_path, json_path = os.path.join(out, f"{stem}.md"), os.path.join(out, f"{stem}.json")
    with open(md_path, "w") as f:
        f.write(md)
    with open(json_path, "w") as f:
        json.dump(rec.to_json(), f, indent=1)
    written = [md_path, json_path] + ([svg] if have_plot else [])
    if official:
        shutil.copyfile(json_path, os.path.join(out, "latest.json"))
        with open(os.path.join(out, "latest.md"), "w") as f:
            f.write(render_tables(rec, "latest.svg" if have_plot else None))
        written += [os.path.join(out, "latest.json"), os.path.join(out, "latest.md")]
        if have_plot:
            shutil.copyfile(svg, os.path.join(out, "latest.svg"))
            written.append(os.path.join(out, "latest.svg"))
        update_readme(render_block(rec, "benches/results/latest.json"))
        written.append(README)
    print(md)
    log(f"raw runs (JSON, interval logs, server logs) in {workdir}")
    log(f"finished in {time.monotonic() - started:.0f} s ({elapsed:.0f} s measuring); "
        "results written to:")
    for w in written:
        print(f"  {os.path.relpath(w, ROOT) if w.startswith(ROOT) else w}", file=sys.stderr)
    if cfg.smoke:
        bad = smoke_failures(rows, results, st)
        require_uring = os.environ.get("FLASHPOLICYD_REQUIRE_URING") == "1"
        for r in rows:
            # A kernel without io_uring (or a seccomp filter) is a skip, not a
            # failure, unless FLASHPOLICYD_REQUIRE_URING=1 (CI) says it must run.
            why = failed.get(r.id, "")
            refused = "io_uring is not available" in why
            if why and r.kind != "peer" and (not refused or require_uring):
                bad.append(f"{r.id}: {why}")
        for r in rows:
            # A peer's errors are its own behaviour (shown in its row), not
            # a failure of this project's code.
            n = sum(sum(x.errors.values()) for runs in results.get(r.id, {}).values()
                    for x in runs)
            if r.kind == "peer" and n:
                log(f"note: peer {r.label} had {n} error(s); they are in its row")
        if bad:
            for b in bad:
                log(f"SMOKE FAILURE: {b}")
            return 1
        log("smoke: every server row served with no errors")
    return 0
