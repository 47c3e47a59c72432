"""Drawing the relay families (relays.py): one table per family, "The game's
own port" and "The bridge for Ruffle", each row's short and long sessions
side by side, and each peer's CPU as a multiple of flashpolicyd's from the
same run. `v` is a render.View; nothing here measures.
"""

from __future__ import annotations

from .relays import FAMILIES, GATEWAY_ROWS

NOTES = {
    "gateway": (
        "Each client opens a connection to the game's port, sends its payload (not a policy "
        "request, so it is relayed), reads it back from the echo server (`flashpolicy-echo`, on "
        "the generator's CPU) and closes (`--no-half-close`: sslh closes both ways at a client's "
        "half-close, so every row is measured so). HAProxy: `scripts/peers/haproxy-gateway.cfg`; "
        "sslh: `scripts/peers/sslh.cfg`. " + GATEWAY_ROWS),
    "bridge": (
        "Each client opens a WebSocket (`flashpolicy-loadgen --websocket`), sends its payload in "
        "masked binary frames, reads it back from the echo server behind the bridge and closes "
        "only then (`--no-half-close`). websockify (Debian's, `websockify 127.0.0.1:PORT "
        "127.0.0.1:ECHO`) forks a process per connection: its CPU counts the children it has "
        "reaped (cutime + cstime) as well as its own; it logs each connection to stderr and has "
        "no option to stop that, so its logging is in its figures."),
}


def short_long(v, fam):
    of = [s for s in v.scens if s.family == fam]
    return ([s for s in of if s.payload_mib is None and not s.hold],
            [s for s in of if s.payload_mib], [s for s in of if s.hold])


def per_10k(v, rid, sid):
    """(MiB per 10,000 open relays, scaled from the median run, relays held
    then) or None."""
    runs = [x for x in v.runs(rid, sid) if x.held and x.mem_delta_kb is not None]
    if not runs:
        return None
    per = sorted(x.mem_delta_kb / x.held for x in runs)
    return per[len(per) // 2] * 10000 / 1024, max(x.held for x in runs)


def times(a, base):
    return f"{a[0] / base[0]:.2f}×" if a and base and base[0] > 0 else "–"


def family_table(v, fam, fmt, heading="##"):
    """The family's table, or [] if it did not run."""
    rows = [r for r in v.ran if r.family == fam]
    if not rows:
        return []
    shorts, longs, holds = short_long(v, fam)
    short = shorts[0].id if shorts else None
    long_ = longs[0] if longs else None
    mib = long_.payload_mib if long_ else 1.0
    base = next((r for r in rows if r.kind == "relay"), None)

    def per_mib(rid):
        m = v.cpu(rid, long_.id) if long_ else None
        return tuple(x / mib for x in m) if m else None

    def mib_s(rid):
        m = v.m(rid, long_.id, "throughput") if long_ else None
        return tuple(x * mib for x in m) if m else None

    lines = [f"{heading} {FAMILIES[fam]}", "", NOTES[fam], "",
             "| server | short: relays/s | short: server CPU µs/relay | × flashpolicyd epoll "
             "| short: p99 µs | long: MiB/s | long: server CPU µs/MiB | × flashpolicyd epoll "
             "| MiB per 10,000 open relays | errors (all runs) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        runs = [x for s in v.res[r.id].values() for x in s]
        c_short = v.cpu(r.id, short) if short else None
        mem = per_10k(v, r.id, holds[0].id) if holds else None
        mem = f"{mem[0]:,.1f} (at {mem[1]:,}, scaled)" if mem else "–"
        b_short = v.cpu(base.id, short) if base and short else None
        lines.append(
            f"| {r.label} | {fmt(v.m(r.id, short, 'throughput'), 0) if short else '–'} "
            f"| {fmt(c_short, 1)} | {times(c_short, b_short)} "
            f"| {fmt(v.m(r.id, short, 'p99', True), 0, False) if short else '–'} "
            f"| {fmt(mib_s(r.id), 1)} | {fmt(per_mib(r.id), 0)} "
            f"| {times(per_mib(r.id), per_mib(base.id) if base else None)} "
            f"| {mem} | {v.errors_text(runs)} |")
    lines.append("")
    if long_:
        what = [s.title.split(": ", 1)[1] for s in shorts[:1] + [long_]]
        what = "; ".join(what)
        lines += [f"{what[:1].upper()}{what[1:]} (MiB/s and µs/MiB count the payload once; it "
                  "crosses the relay both ways). Server CPU: the relay's process on its own CPU "
                  "(/proc utime + stime, plus the children it reaped), not the echo server's. "
                  "Memory: N relays opened through the server by the bench's own client "
                  "(scripts/bench/holdopen.py; one byte echoed on each, so each is set up end "
                  "to end), the server's Pss with them open minus just before, summed over its "
                  "process tree, divided by N and scaled to 10,000 (the N it was measured at "
                  "is in the cell). Kernel memory is in no process's Pss: socket buffers, and the "
                  "two pipes per relay flashpolicyd's epoll `--gateway` splices through (six "
                  "descriptors per relay, so at most about 3,300 relays under a limit of "
                  "20,000; the io_uring relay holds two, and its provided buffers are in its "
                  "Pss once touched).", ""]
    return lines


def family_tables(v, fmt, heading="##"):
    out = []
    for fam in FAMILIES:
        out += family_table(v, fam, fmt, heading)
    return out
