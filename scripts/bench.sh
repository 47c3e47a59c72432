#!/usr/bin/env bash
# The flashpolicy benchmark: builds release binaries, runs flashpolicy-loadgen
# against every engine, the kernel floor and the installed peers, and writes
# benches/results/<date>-<host>.{json,md,svg} (plus latest.{json,md,svg} and the
# generated block of README.md's Performance section). Method: benches/README.md.
#
#   scripts/bench.sh                # the default suite (under 10 minutes on 2 cores)
#   scripts/bench.sh --smoke        # seconds; exits non-zero on any error (CI); writes to /tmp
#   scripts/bench.sh --render-only  # redraw latest.md and README.md from latest.json
#   scripts/bench.sh --help         # every option
#
# Needs Linux, python3 and taskset (util-linux). Peers: scripts/peers-setup.sh.
set -euo pipefail
# The code is the package scripts/bench/ (measure.py, rows.py, render.py, cli.py);
# -B: no __pycache__ in the worktree.
exec python3 -B "$(dirname "$0")/bench" "$@"
