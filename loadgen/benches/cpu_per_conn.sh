#!/usr/bin/env bash
# The generator's own CPU per connection, next to the server's.
#
# Starts flashpolicyd (one epoll thread) pinned to one CPU and one
# flashpolicy-loadgen thread pinned to another, runs a closed loop, and
# prints both processes' CPU time (user + system) per connection. The
# generator must stay cheaper than what it measures.
#
# Usage: loadgen/benches/cpu_per_conn.sh [DURATION] [CONNECTIONS] [extra loadgen args...]
#   e.g. loadgen/benches/cpu_per_conn.sh 5s 50           (closed loop, 50 clients)
#        loadgen/benches/cpu_per_conn.sh 5s 0 --rate 5000  (open loop; CONNECTIONS unused)
# Environment: CARGO_TARGET_DIR (default: target), SERVER_CPU (1), LOADGEN_CPU (0),
#              BACKEND (epoll), FLOOR=1 to also time the simplest possible client
#              (blocking socket/connect/send/recv/close in python3) for comparison.
#
# On loopback the kernel runs the receiving side of every packet in the
# sender's context: the client's connect() also pays for the server's SYN
# handling, and its close() for the server's TIME_WAIT. The user/system split
# printed below shows how much is the generator's own code.
set -euo pipefail
cd "$(dirname "$0")/../.."

duration=${1:-5s}
connections=${2:-50}
shift $(( $# > 2 ? 2 : $# )) || true
target_dir=${CARGO_TARGET_DIR:-target}
server_cpu=${SERVER_CPU:-1}
loadgen_cpu=${LOADGEN_CPU:-0}
backend=${BACKEND:-epoll}

cargo build --release -q -p flashpolicy-loadgen -p flashpolicy-server
bin="$target_dir/release"

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, kernel $(uname -r)"

log=$(mktemp)
json=$(mktemp)
trap 'kill "$server_pid" 2>/dev/null || true; rm -f "$log" "$json"' EXIT
NO_COLOR=1 taskset -c "$server_cpu" "$bin/flashpolicyd" --listen 127.0.0.1:0 \
    --backend "$backend" --threads 1 --log info 2>"$log" &
server_pid=$!
addr=""
for _ in $(seq 100); do
    addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$log" | head -1)
    [ -n "$addr" ] && break
    sleep 0.05
done
[ -n "$addr" ] || { echo "flashpolicyd did not start:"; cat "$log"; exit 1; }

ticks=$(getconf CLK_TCK)
server_cpu_ticks() { awk '{print $14 " " $15}' "/proc/$server_pid/stat"; }

# Closed loop unless the extra arguments choose the open loop.
load=(-c "$connections")
for a in "$@"; do
    case "$a" in --rate|-R|--rate=*) load=() ;; esac
done

before=$(server_cpu_ticks)
taskset -c "$loadgen_cpu" "$bin/flashpolicy-loadgen" --threads 1 "${load[@]}" \
    --duration "$duration" --source 127.0.0.2-127.0.0.254 --json "$json" "$@" "$addr"
after=$(server_cpu_ticks)

python3 - "$json" "$before" "$after" "$ticks" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
(bu, bs), (au, as_) = map(int, sys.argv[2].split()), map(int, sys.argv[3].split())
ticks = int(sys.argv[4])
n = j["connections_finished"]
per = lambda t: t * 1e6 / ticks / n if n else float("nan")
server_user, server_sys = per(au - bu), per(as_ - bs)
server_us = server_user + server_sys
gen = j["generator_cpu_us_per_conn"]
print(f"== connections: {n}, ok/s {j['throughput_per_sec']}, errors {sum(j['errors'].values())}")
print(f"== generator: {gen:.1f} µs/conn ({j['generator_cpu_user_us_per_conn']:.1f} user + "
      f"{j['generator_cpu_sys_us_per_conn']:.1f} system)")
print(f"== server:    {server_us:.1f} µs/conn ({server_user:.1f} user + {server_sys:.1f} system; /proc/PID/stat)")
print(f"== generator/server: {gen / server_us:.2f}")
PY

if [ "${FLOOR:-0}" = 1 ]; then
    # The same exchange with no event loop at all: what any TCP client pays.
    taskset -c "$loadgen_cpu" python3 - "$addr" <<'PY'
import resource, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
req, n = b"<policy-file-request/>\0", 10000
r0, t = resource.getrusage(resource.RUSAGE_SELF), time.time()
for _ in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(req)
    while s.recv(4096):
        pass
    s.close()
r1 = resource.getrusage(resource.RUSAGE_SELF)
user = (r1.ru_utime - r0.ru_utime) * 1e6 / n
sys_ = (r1.ru_stime - r0.ru_stime) * 1e6 / n
print(f"== floor (blocking python client, {n} connections): {user + sys_:.1f} µs/conn "
      f"({user:.1f} user + {sys_:.1f} system)")
PY
fi
