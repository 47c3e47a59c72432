"""The flashpolicy benchmark: what one served connection costs each engine.

Run it through scripts/bench.sh (see `scripts/bench.sh --help`). It builds
release binaries, then runs flashpolicy-loadgen against each server row:

  flashpolicyd --backend epoll | uring, at 1 thread and at all cores; epoll
  and uring with --defer-accept, and uring with --send-zc, at 1 thread; the
  kernel floor (crates/server/examples/kernel_floor.rs, accept and close,
  nothing else); nginx (stream `return`) and node's `policyfile` when
  installed (scripts/peers-setup.sh). Two relay families in front of one
  echo server (relays.py): the game's own port (flashpolicyd --gateway,
  HAProxy, sslh-select) and the bridge for Ruffle (flashpolicyd
  --websocket, websockify), each with short and long sessions.

Scenarios per row: closed loop at 64 and 1,024 connections; open loop at a
fixed rate; N idle connections held while good clients are served at that
rate; and, for the 1-thread epoll and uring rows (with and without
--defer-accept) and the floor, the 64-connection closed loop again with the
request sent a moment after the handshake (loadgen --send-delay). Rows are
measured in alternation (A B C A B C ...) and each figure is the median of the
rounds, with min-max.

Every run's figures go to benches/results/<date>-<host>.json; the tables
(.md) and README.md's Performance block are rendered from that record alone,
so `--render-only` can redraw them from a committed run without measuring.
Method, columns and caveats: benches/README.md.

The package has three parts:

  rows.py     what is run and what comes out: settings, rows, scenarios, one
              run's figures and the whole record, as dataclasses, and reading
              records written by older versions of this script (relays.py:
              the relay families' rows and scenarios);
  measure.py  running things: the build, servers, the generator, pinning,
              /proc CPU accounting (peers.py: nginx and node set-up);
  render.py   drawing a record: the tables, README.md's block, the generated
              sentences (sentences.py), the relay families' tables
              (families.py) and the latency plot;

and cli.py, which parses the options and runs the rounds.

Server CPU per connection = the server process's utime+stime (/proc/PID/stat)
over the measured window / successful connections in it. Nothing but the
standard library: python3 >= 3.8 and Linux /proc.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = os.path.join(ROOT, "scripts", "peers")
POLICY = os.path.join(PEERS, "policy.xml")
RESULTS = os.path.join(ROOT, "benches", "results")
README = os.path.join(ROOT, "README.md")


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)
