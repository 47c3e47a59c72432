"""Memory per open relay: opens N connections through a relay (plain TCP for
the game's port, WebSockets for the bridge), sends one byte on each and waits
for its echo, so every relay is set up end to end, then reads what the
relay's process tree holds (the sum of Pss over the process and its
descendants, /proc/PID/smaps_rollup; for a process that does not fork the
change in Pss is the change in RSS) against what it held idle just before.
The loadgen has no way to hold relays open, hence this small client.
"""

from __future__ import annotations

import base64
import os
import resource
import socket
import time

from .rows import Run

KEY = base64.b64encode(b"flashpolicybench").decode()  # 16 bytes, as RFC 6455 asks


def tree(pid):
    """pid and every descendant of it."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def pss_kb(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("closed")
        buf += chunk
    return buf


def open_one(addr, websocket):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    try:
        if websocket:
            s.sendall((f"GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                       "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n")
                      .encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise OSError("closed during the upgrade")
                head += chunk
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                raise OSError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            mask = b"\x01\x02\x03\x04"
            s.sendall(b"\x82\x81" + mask + bytes([ord("x") ^ mask[0]]))
            if recv_exact(s, 3)[2:] != b"x":
                raise OSError("wrong echo")
        else:
            s.sendall(b"x")
            if recv_exact(s, 1) != b"x":
                raise OSError("wrong echo")
    except OSError:
        s.close()
        raise
    return s


def hold(server, n, websocket) -> Run:
    """Opens n relays through server (measure.Server) and returns a Run with
    held (relays open end to end) and mem_delta_kb (the tree's Pss with them
    open minus idle)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n + 64)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    time.sleep(0.2)
    idle = pss_kb(server.proc.pid)
    socks, failed, first = [], 0, {}
    t0 = time.monotonic()
    try:
        for _ in range(n):
            try:
                socks.append(open_one(server.addr, websocket))
            except OSError as e:
                failed += 1
                first.setdefault("hold", f"relay {len(socks) + failed}: {e}")
        time.sleep(0.3)
        held = pss_kb(server.proc.pid)
    finally:
        for s in socks:
            s.close()
    return Run(ok=len(socks), finished=n, per_ok=True, throughput=0.0,
               errors={"hold": failed} if failed else {}, duration_s=time.monotonic() - t0,
               held=len(socks), mem_delta_kb=held - idle, first_errors=first)
