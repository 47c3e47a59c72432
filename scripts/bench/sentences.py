"""The generated sentences under "At a glance": which engine costs least,
what --defer-accept changes, whether the generator is the bottleneck, and
what a request sent one gap after the handshake changes. Each says whether a
difference is larger than the spread between rounds. `v` is a render.View.
"""

from __future__ import annotations

from .rows import DELAY, FEATURE_PAIRS, delay_text


def apart(a, b):
    """Two (median, min, max): whether their min–max ranges do not overlap."""
    return b[2] < a[1] or a[2] < b[1]


def verdict(v, sid="c64"):
    """Which engine costs least, and whether the difference is larger than
    the noise between rounds."""
    engines = [(v.cpu(r.id, sid), r.label) for r in v.ran if r.kind == "engine"]
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


def defer(v, sid="c64"):
    """What --defer-accept changes at 1 thread."""
    parts, sep = [], []
    for base in ("epoll", "uring"):
        a, b = v.cpu(f"{base}-1", sid), v.cpu(f"{base}-da-1", sid)
        if a and b:
            parts.append(f"{base} {a[0]:.1f} → {b[0]:.1f} µs ({b[0] - a[0]:+.1f})")
            sep.append(apart(a, b))
    if not parts:
        return ""
    text = "With `--defer-accept`, 1 thread, 64 connections: " + ", ".join(parts) + " per connection"
    if v.rounds(sid) < 3:
        return text + f"; {v.rounds(sid)} round(s) only, too few to tell from noise."
    if all(sep):
        return text + "; every change is larger than the spread between rounds."
    return text + "; where the min–max ranges overlap, the change is within the noise."


def generator(v, sid="c64"):
    """Is the load generator the bottleneck?"""
    gen_cpus = v.layout["generator"]
    engines = [r for r in v.ran if r.kind == "engine"]
    per = [v.m(r.id, sid, "gen_cpu_us") for r in engines]
    busy = [v.m(r.id, sid, "gen_busy") for r in engines]
    rel = []
    for r, g in zip(engines, per):
        s = v.cpu(r.id, sid)
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


def delay_of(v):
    return delay_text(v.st.send_delay or "")


def change_text(a, b, rounds):
    """The change from a to b (median, min, max), and whether it is beyond
    the spread between rounds."""
    text = f"{b[0] - a[0]:+.2f} µs ({b[0] / a[0] - 1:+.0%})" if a[0] > 0 else f"{b[0] - a[0]:+.2f} µs"
    if rounds < 3:
        return text
    return text + (", beyond the noise" if apart(a, b) else ", within the noise")


def delay(v):
    """What a request sent one gap after the handshake does to the engines'
    cost as a multiple of the floor's."""
    d = delay_of(v)
    fa, fb = v.cpu("floor", "c64"), v.cpu("floor", DELAY)
    if not (fa and fb and fa[0] > 0 and fb[0] > 0):
        return ""
    at_once, later = [], []
    for r in v.ran:
        a, b = v.cpu(r.id, "c64"), v.cpu(r.id, DELAY)
        if r.kind == "engine" and a and b:
            at_once.append(a[0] / fa[0])
            later.append(b[0] / fb[0])
    if not later:
        return ""
    text = (f"With the request {d} after the handshake these engines cost "
            f"{min(later):.2f}–{max(later):.2f}× the kernel floor, against "
            f"{min(at_once):.2f}–{max(at_once):.2f}× with the request sent at once; the floor "
            f"itself goes from {fa[0]:.1f} to {fb[0]:.1f} µs")
    if v.rounds(DELAY) < 3:
        return text + f"; {v.rounds(DELAY)} round(s) only, too few to tell from noise."
    return text + (" (beyond the noise)." if apart(fa, fb) else " (within the noise).")


def capacity(v, sid="c64"):
    """Capacity arithmetic for the README's "Running at scale": the
    connections one core's CPU covers at the measured cost per connection."""
    parts = []
    for rid, name in (("epoll-1", "epoll"), ("uring-1", "uring"),
                      ("epoll-pp-1", "epoll with PROXY v2"), ("uring-pp-1", "uring with PROXY v2")):
        c = v.cpu(rid, sid)
        if c and c[0] > 0:
            parts.append(f"{name} {1e6 / c[0]:,.0f}/s ({c[0]:.1f} µs)")
    if not parts:
        return ""
    text = ("Capacity per core, from the median server CPU per connection at 1 thread and 64 "
            "connections (1,000,000 µs ÷ µs per connection, the server's own CPU only): "
            + ", ".join(parts))
    f = v.cpu("floor", sid)
    if f and f[0] > 0:
        text += f"; the kernel's own accept and close alone bound it at {1e6 / f[0]:,.0f}/s"
    return text + (". The load balancer, the softirq time the table's full version shows and "
                   "headroom for bursts come on top: plan for half of it.")


def features(v, sid="c64"):
    """What --proxy-protocol (v2 headers) and --metrics cost per connection,
    against the same engine's plain 1-thread row in the same run."""
    parts = []
    for rid, base, option in FEATURE_PAIRS:
        a, b = v.cpu(base, sid), v.cpu(rid, sid)
        if a and b and a[0] > 0:
            engine = base.split("-")[0]
            parts.append(f"{option} on {engine} {b[0] / a[0]:.2f}× "
                         f"({change_text(a, b, v.rounds(sid))})")
    if not parts:
        return ""
    return ("What each option costs, as server CPU per connection against the same engine "
            "without it (1 thread, 64 connections): " + "; ".join(parts) + ".")
