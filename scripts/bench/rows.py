"""What the suite runs and what comes out of it, as data.

Settings, the server rows, the scenarios, one run's figures and the record
of a whole suite are dataclasses here. A record is written to JSON with the
same keys as every earlier version of this script wrote, and `Record.from_json`
reads those earlier records too, filling in what they lack (`_normalize`).
Nothing here runs a process or draws a table.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import POLICY
from .relays import relay_rows, relay_scenarios

SOURCES = "127.0.0.2-127.0.0.254"
# The server's --timeout: idle clients must stay open for the whole idle scenario.
SERVER_TIMEOUT = "30s"
# The delayed closed-loop scenario's id, and the rows it runs for: each
# engine's 1-thread row with and without --defer-accept, and the floor.
DELAY = "c64d"
DELAY_ROWS = ("epoll-1", "epoll-da-1", "uring-1", "uring-da-1", "floor")


@dataclass
class Settings:
    rounds: int = 3
    duration: float = 2.0
    warmup: float = 0.5
    rate: float = 5000.0
    idle: int = 10000
    smoke: bool = False
    # loadgen --send-delay for the DELAY scenario (humantime, e.g. "50us");
    # None: not run (a record from before it existed, or a generator without
    # the option).
    send_delay: Optional[str] = None

    @classmethod
    def from_json(cls, d: dict) -> "Settings":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Scenario:
    id: str
    title: str
    args: List[str]
    idle: bool = False  # hold Settings.idle idle connections during the run
    only_rows: Optional[tuple] = None  # row ids it runs for; None: every row
    note: str = ""  # printed under the scenario's table
    family: str = "policy"  # "policy" (port 843), or a relay family (relays.FAMILIES)
    payload_mib: Optional[float] = None  # relay long sessions: MiB echoed per client
    hold: bool = False  # relays: hold relays open and read the memory (holdopen.py)


def delay_text(d: str) -> str:
    """'50us' -> '50 µs' (humantime units as a reader writes them)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ns|us|µs|ms|s)\s*", d or "")
    if not m:
        return d
    return f"{m.group(1)} {'µs' if m.group(2) in ('us', 'µs') else m.group(2)}"


def scenarios(st: Settings) -> List[Scenario]:
    """Every scenario these settings run, in table order."""
    r = f"{st.rate:g}"
    out = [
        Scenario("c64", "closed loop, 64 connections", ["--connections", "64"]),
        Scenario("c1024", "closed loop, 1,024 connections", ["--connections", "1024"]),
        Scenario("open", f"open loop, {st.rate:,.0f} connections/s", ["--rate", r]),
        Scenario("idle", f"{st.idle:,} idle connections held, good clients at {st.rate:,.0f}/s",
                 ["--rate", r], idle=True),
    ]
    if st.send_delay:
        d = delay_text(st.send_delay)
        out.append(Scenario(
            DELAY, f"closed loop, 64 connections, request sent {d} after the handshake",
            ["--connections", "64", "--send-delay", st.send_delay], only_rows=DELAY_ROWS,
            note=(f"Each client waits {d} between the end of the handshake and its request "
                  "(`flashpolicy-loadgen --send-delay`), as a real client's request arrives some "
                  "time after the handshake; in every other scenario the request leaves at once. "
                  "Run for the 1-thread epoll and uring rows, with and without `--defer-accept`, "
                  "and the floor only.")))
    return out + relay_scenarios(Scenario)


@dataclass
class Row:
    """One server configuration."""

    id: str
    label: str
    kind: str  # "engine", "relay" (flashpolicyd --gateway, --websocket), "floor" or "peer"
    argv: Optional[List[str]] = None
    cpu: Optional[int] = None  # pinned CPU, None: unpinned
    defer: bool = False  # --defer-accept
    skip_scenarios: List[str] = field(default_factory=list)
    skip: Optional[str] = None  # why it did not run
    port: Optional[int] = None  # peers: their fixed port (flashpolicyd logs its own)
    gen_args: List[str] = field(default_factory=list)  # extra loadgen flags for this row
    family: str = "policy"  # the scenarios it runs: Scenario.family

    def runs(self, scen: Scenario) -> bool:
        return (scen.family == self.family and scen.id not in self.skip_scenarios
                and (scen.only_rows is None or self.id in scen.only_rows))

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in
                ("label", "argv", "cpu", "skip", "kind", "defer", "skip_scenarios", "gen_args",
                 "family")}


@dataclass
class Run:
    """One measured run of one scenario against one row."""

    ok: int
    finished: int
    per_ok: bool  # CPU divided by successes (engines) or by every finished connection (†)
    throughput: float
    errors: Dict[str, int]  # by the generator's error kind, as its --json names them
    p50: Optional[float] = None
    p99: Optional[float] = None
    p99_9: Optional[float] = None
    max: Optional[float] = None
    cpu_us: Optional[float] = None
    core_us: Optional[float] = None
    gen_cpu_us: Optional[float] = None
    gen_user_us: Optional[float] = None
    gen_busy: Optional[float] = None  # share of the generator's CPUs it kept busy
    duration_s: Optional[float] = None
    peak_rss_kb: Optional[int] = None
    held: Optional[int] = None  # idle connections the server process holds
    idle_connected: Optional[int] = None  # idle connections the clients have open
    first_errors: Dict[str, str] = field(default_factory=dict)
    mem_delta_kb: Optional[int] = None  # relay hold: the server's Pss with them open minus idle
    hlog: Optional[str] = None  # interval log (this run only; not in the record)

    @classmethod
    def from_json(cls, d: dict) -> "Run":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        del d["hlog"]
        return d


@dataclass
class Record:
    """One suite: the machine, the settings, the rows and every run."""

    machine: dict
    settings: Settings
    layout: dict  # {"generator": [cpus] or None, "server": cpu or None, "cpus": [...]}
    rows: List[Row]
    results: Dict[str, Dict[str, List[Run]]]  # row id -> scenario id -> runs, by round
    only: Optional[str] = None
    elapsed_s: Optional[float] = None
    skipped_scenarios: Dict[str, str] = field(default_factory=dict)  # id -> why

    def to_json(self) -> dict:
        d = {"machine": self.machine, "settings": dataclasses.asdict(self.settings),
             "only": self.only, "elapsed_s": self.elapsed_s, "layout": self.layout,
             "rows": {r.id: r.to_json() for r in self.rows},
             "results": {rid: {sid: [x.to_json() for x in runs] for sid, runs in res.items()}
                         for rid, res in self.results.items()}}
        if self.skipped_scenarios:
            d["skipped_scenarios"] = self.skipped_scenarios
        return d

    @classmethod
    def from_json(cls, rec: dict) -> "Record":
        rec = _normalize(rec)
        return cls(
            machine=rec["machine"], settings=Settings.from_json(rec["settings"]),
            layout=rec["layout"],
            rows=[Row(id=rid, label=r["label"], kind=r["kind"], argv=r.get("argv"),
                      cpu=r.get("cpu"), defer=r["defer"], skip_scenarios=r["skip_scenarios"],
                      skip=r.get("skip"), gen_args=r.get("gen_args") or [],
                      family=r.get("family") or "policy")
                  for rid, r in rec["rows"].items()],
            results={rid: {sid: [Run.from_json(x) for x in runs] for sid, runs in res.items()}
                     for rid, res in rec["results"].items()},
            only=rec.get("only"), elapsed_s=rec.get("elapsed_s"),
            skipped_scenarios=rec.get("skipped_scenarios") or {})

    def error_kinds(self) -> List[str]:
        """The generator's error kinds, in the order its runs name them: the
        loadgen's --json output is the one list, nothing here retypes it."""
        kinds = {}
        for res in self.results.values():
            for runs in res.values():
                for x in runs:
                    kinds.update(dict.fromkeys(x.errors))
        return list(kinds)


def _normalize(rec: dict) -> dict:
    """Fills in what records written before a field existed lack, so that
    every record renders the same way. Works on a copy."""
    rec = {k: v for k, v in rec.items()}
    st = rec["settings"] = dict(rec.get("settings", {}))
    st.setdefault("smoke", False)
    rows = rec["rows"] = {rid: dict(r) for rid, r in rec["rows"].items()}
    for rid, r in rows.items():
        r.setdefault("kind", "floor" if rid == "floor"
                     else "peer" if rid in ("nginx", "node") else "engine")
        r.setdefault("defer", "--defer-accept" in (r.get("argv") or []))
        r.setdefault("skip_scenarios", [])
    if "layout" not in rec:
        server = next((r["cpu"] for r in rows.values() if r.get("cpu") is not None), None)
        cpus = list(range(rec["machine"].get("cpus") or 1))
        rec["layout"] = {"generator": [c for c in cpus if c != server] if server is not None else None,
                         "server": server, "cpus": cpus}
    ngen = len(rec["layout"]["generator"] or rec["layout"]["cpus"])
    rec["results"] = {rid: {sid: [dict(x) for x in runs] for sid, runs in res.items()}
                      for rid, res in rec["results"].items()}
    for res in rec["results"].values():
        for runs in res.values():
            for x in runs:
                if x.get("gen_busy") is None and x.get("gen_cpu_us") and x.get("finished"):
                    x["gen_busy"] = (x["gen_cpu_us"] * x["finished"] / 1e6
                                     / (x.get("duration_s") or st["duration"]) / ngen)
    return rec


# The flashpolicyd rows: (id, label, extra flags, also at all cores, scenarios
# the full suite skips for it, extra load-generator flags; --smoke runs every
# scenario). "{metrics}" becomes a free loopback port.
PROXY = ["--proxy-protocol", "--proxy-from", "127.0.0.0/8"]
FEATURE_SKIPS = ("c1024", "idle")

ENGINES = [
    ("epoll", "epoll", [], True, (), []),
    ("epoll-da", "epoll --defer-accept", ["--defer-accept"], False, (), []),
    ("uring", "uring", [], True, (), []),
    ("uring-da", "uring --defer-accept", ["--defer-accept"], False, (), []),
    # Zero-copy send changes how the reply leaves, not how idle clients are
    # held, and cannot pay on loopback: one row at 1 thread shows what the
    # option costs, and it skips the idle scenario (the suite's costliest)
    # to keep the suite under 10 minutes.
    ("uring-zc", "uring --send-zc", ["--send-zc"], False, ("idle",), []),
    # What PROXY v2 parsing and live metrics cost per connection: compared
    # with the plain 1-thread rows in the closed and open loops only.
    ("epoll-pp", "epoll --proxy-protocol (v2)", PROXY, False, FEATURE_SKIPS,
     ["--proxy-protocol", "v2"]),
    ("uring-pp", "uring --proxy-protocol (v2)", PROXY, False, FEATURE_SKIPS,
     ["--proxy-protocol", "v2"]),
    ("epoll-m", "epoll --metrics", ["--metrics", "{metrics}"], False, FEATURE_SKIPS, []),
    ("uring-m", "uring --metrics", ["--metrics", "{metrics}"], False, FEATURE_SKIPS, []),
]

# The pairs the "what each option costs" sentence compares: (row, base row, option).
FEATURE_PAIRS = [
    ("epoll-pp-1", "epoll-1", "PROXY v2"), ("uring-pp-1", "uring-1", "PROXY v2"),
    ("epoll-m-1", "epoll-1", "--metrics"), ("uring-m-1", "uring-1", "--metrics"),
]


def free_port():
    """A loopback port free now (for --metrics)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_rows(bins: dict, st: Settings, layout, peers, unsupported=(), echo="ECHO",
                relay_peers=()) -> List[Row]:
    """Every row, in the order each round runs them. peers: (id, label,
    argv, port, why-not) for nginx and node, or [] without peers;
    unsupported: engine row ids (without the thread count) these binaries
    cannot run; echo: the echo server the relay rows relay to;
    relay_peers: (id, label, argv, port, why-not, family) for HAProxy, sslh
    and websockify (peers.relay_peers)."""
    _, server_cpu, cpus = layout
    n = len(cpus)
    out = []
    base = [bins["server"], "--listen", "127.0.0.1:0", "--policy", POLICY, "--timeout", SERVER_TIMEOUT]
    for threads, pinned in ((1, True), (n, False)):
        if threads > 1 and (n == 1 or st.smoke):
            continue
        for eid, label, extra, all_cores, skips, gen in ENGINES:
            if threads > 1 and not all_cores:
                continue
            if eid in unsupported:
                continue
            extra = [f"127.0.0.1:{free_port()}" if x == "{metrics}" else x for x in extra]
            be = "uring" if eid.startswith("uring") else "epoll"
            out.append(Row(id=f"{eid}-{threads}", label=f"flashpolicyd {label}, {threads} thr",
                           kind="engine",
                           argv=base + ["--backend", be, "--threads", str(threads)] + extra,
                           cpu=server_cpu if pinned else None, defer="--defer-accept" in extra,
                           skip_scenarios=[] if st.smoke else list(skips), gen_args=list(gen)))
    out.append(Row(id="floor", label="kernel floor, 1 thr", kind="floor",
                   argv=[bins["floor"], "--listen", "127.0.0.1:0", "--threads", "1"],
                   cpu=server_cpu))
    for pid, label, argv, port, why in peers:
        out.append(Row(id=pid, label=label, kind="peer", argv=argv, port=port,
                       cpu=server_cpu if argv else None, skip=why))
    return out + relay_rows(Row, bins, st, layout, echo, relay_peers, free_port, unsupported)
