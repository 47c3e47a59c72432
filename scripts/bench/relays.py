"""The relay families, as data: the game's own port (`flashpolicyd --gateway`
against HAProxy and sslh) and the bridge for Ruffle (`flashpolicyd
--websocket` against websockify), each in front of the same echo server
(`flashpolicy-echo`, started once per suite on the generator's CPUs).

Their scenarios: short sessions (64 clients in closed loop, each relaying
64 bytes there and back) for CPU per relayed connection and p99, and long
sessions (8 clients, 1 MiB there and back each) for CPU per MiB. Every
client closes only once its echo is back (loadgen --no-half-close): sslh
closes both ways at a client's half-close, so all rows are measured alike.
Nothing here runs a process; peers.py writes the peers' configurations.
"""

from __future__ import annotations

from typing import List

from . import POLICY

# family id -> the title of its table.
FAMILIES = {
    "gateway": "The game's own port",
    "bridge": "The bridge for Ruffle",
}
SHORT_PAYLOAD = "64"
LONG_PAYLOAD, LONG_MIB = "1MiB", 1.0
NO_HALF_CLOSE = ["--no-half-close"]


def relay_scenarios(scenario) -> list:
    """The families' scenarios; `scenario` is rows.Scenario."""
    out = []
    for fam, prefix, extra in (("gateway", "gw", []), ("bridge", "ws", ["--websocket"])):
        out.append(scenario(
            f"{prefix}-short", f"{FAMILIES[fam]}: short sessions, 64 connections, 64-byte echo",
            ["--connections", "64", "--payload", SHORT_PAYLOAD, *extra, *NO_HALF_CLOSE],
            family=fam))
        out.append(scenario(
            f"{prefix}-long", f"{FAMILIES[fam]}: long sessions, 8 connections, 1 MiB echo each",
            ["--connections", "8", "--payload", LONG_PAYLOAD, *extra, *NO_HALF_CLOSE],
            family=fam, payload_mib=LONG_MIB))
        out.append(scenario(
            f"{prefix}-hold", f"{FAMILIES[fam]}: relays held open, one byte echoed on each",
            [], family=fam, hold=True))
    return out


# Relays held open at most: flashpolicyd's epoll gateway holds six descriptors
# per relay (two sockets, and a pipe each way for splice), under the hard limit
# of 20,000 here; per row: sslh-select's select() handles descriptors below
# FD_SETSIZE (1,024), two per relay; websockify forks a process per relay.
HOLD_MAX = 3000
HOLD_CAP = {"gw-sslh": 400, "ws-websockify": 200}


def hold_count(rid, st):
    """How many relays the hold scenario opens through row rid: half the
    idle scenario's count, at most HOLD_MAX, capped per row (20 in a smoke
    run, which only checks that it works)."""
    return min(max(1, st.idle // 2), 20 if st.smoke else HOLD_MAX, HOLD_CAP.get(rid, HOLD_MAX))


# What the gateway family's two flashpolicyd rows measure.
GATEWAY_ROWS = ("flashpolicyd has a row per engine: `--backend epoll` relays with splice(2) "
                "through a pipe each way; `--backend uring` relays on the thread's io_uring with "
                "provided buffers (RECV with buffer select, then SEND: one copy each way, no "
                "pipes).")


def relay_rows(row, bins, st, layout, echo, peers, free_port, unsupported=()) -> List:
    """flashpolicyd's gateway and bridge rows at 1 thread, then the peers
    (id, label, argv, port, why-not, family) from peers.relay_peers. `row` is
    rows.Row; echo: the echo server's address."""
    _, server_cpu, _ = layout
    skips = ["gw-long", "ws-long"] if st.smoke else []
    base = [bins["server"], "--listen", "127.0.0.1:0", "--policy", POLICY, "--timeout", "30s",
            "--threads", "1"]
    out = []
    for rid, fam, flag, label, backend in (
            ("gw-fpd", "gateway", "--gateway", "flashpolicyd --gateway", "epoll"),
            ("gw-fpd-uring", "gateway", "--gateway", "flashpolicyd --gateway", "uring"),
            ("ws-fpd", "bridge", "--websocket", "flashpolicyd --websocket", "epoll")):
        port = free_port()
        argv = base + ["--backend", backend, flag, f"127.0.0.1:{port}={echo}"]
        out.append(row(id=rid, label=f"{label}, {backend}, 1 thr", kind="relay", family=fam,
                       argv=argv, port=port,
                       cpu=server_cpu, skip_scenarios=list(skips),
                       skip=f"this flashpolicyd has no {flag}" if rid in unsupported else None))
    for pid, label, argv, port, why, fam in peers:
        out.append(row(id=pid, label=label, kind="peer", family=fam, argv=argv, port=port,
                       cpu=server_cpu if argv else None, skip=why, skip_scenarios=list(skips)))
    return out
