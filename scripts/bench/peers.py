"""The peers, when installed (scripts/peers-setup.sh): nginx's stream module
answering with `return`, and node's `policyfile` package; for the relay
families HAProxy and sslh-select (the game's own port) and websockify (the
bridge). Finding them and writing their configurations; the bench never
installs anything."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess

from . import PEERS, POLICY


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx(workdir):
    """(argv, port) for nginx with the stream module, or the reason it
    cannot run here."""
    exe = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if not exe:
        return None, "nginx not installed (scripts/peers-setup.sh nginx)"
    info = subprocess.run([exe, "-V"], capture_output=True, text=True).stderr
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
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
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
    return ([exe, "-p", workdir, "-c", path], port), None


def node():
    exe = shutil.which("node")
    if not exe:
        return None, "node not installed"
    if not os.path.isdir(os.path.join(PEERS, "node_modules", "policyfile")):
        return None, "npm package policyfile not installed (scripts/peers-setup.sh node)"
    port = free_port()
    return ([exe, os.path.join(PEERS, "policyfile-server.js"), str(port)], port), None


def find(workdir):
    """(id, label, argv, port, why-not) for each peer; argv is None where it
    cannot run."""
    out = []
    for pid, label, (found, why) in (("nginx", "nginx stream return", nginx(workdir)),
                                      ("node", "node policyfile", node())):
        argv, port = found or (None, None)
        out.append((pid, label, argv, port, why))
    return out


def fill(template, workdir, name, values):
    """Writes scripts/peers/TEMPLATE with each @KEY@ replaced (comment lines,
    which name the keys, left out) to WORKDIR/NAME; returns its path."""
    with open(os.path.join(PEERS, template)) as f:
        conf = "".join(l for l in f if not l.lstrip().startswith("#"))
    for k, v in values.items():
        conf = conf.replace(f"@{k}@", v)
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(conf)
    return path


def which(name):
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None)


def relay_peers(workdir, echo, policy):
    """(id, label, argv, port, why-not, family) for HAProxy and sslh-select in
    front of the echo server at ECHO (with the policy server at POLICY for
    policy requests), and for websockify; argv is None where one cannot run."""
    setup = "not installed (scripts/peers-setup.sh gateway)"
    out = []
    port = free_port()
    exe = which("haproxy")
    argv = [exe, "-db", "-f", fill("haproxy-gateway.cfg", workdir, "haproxy.cfg", {
        "LISTEN": f"127.0.0.1:{port}", "UPSTREAM": echo, "POLICY": policy,
        # Two descriptors per relay, under the hard limit of 20,000 here.
        "MAXCONN": "9000"})] if exe else None
    out.append(("gw-haproxy", "HAProxy (tcp, 1 thread)", argv, port,
                None if exe else f"haproxy {setup}", "gateway"))
    port = free_port()
    exe = which("sslh-select")
    values = {"LISTEN_HOST": "127.0.0.1", "LISTEN_PORT": str(port),
              "POLICY_PORT": policy.rsplit(":", 1)[1], "UPSTREAM_PORT": echo.rsplit(":", 1)[1]}
    argv = [exe, "-f", "-F" + fill("sslh.cfg", workdir, "sslh.cfg", values)] if exe else None
    out.append(("gw-sslh", "sslh-select", argv, port,
                None if exe else f"sslh-select {setup}", "gateway"))
    port = free_port()
    exe = which("websockify")
    out.append(("ws-websockify", "websockify", [exe, f"127.0.0.1:{port}", echo] if exe else None,
                port, None if exe else f"websockify {setup}", "bridge"))
    return out
